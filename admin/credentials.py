"""``/admin/v1/tenants/{slug}/webhook-secrets`` and ``.../scim-tokens``: the credentials the
Users service (Standard Webhooks) and identity providers (SCIM bearer tokens) present.

Several can be active at once, so a tenant rotates without downtime: add the new one, move
the caller, delete the old one. The value is shown once, in the response that created it.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from admin import schemas
from admin.common import admin_blueprint, documented
from app import credentials, runtime, tenants

webhook_blp = admin_blueprint(
    "webhook-secrets", "Webhook secrets (`whsec_...`) the Users service signs calls with."
)
scim_blp = admin_blueprint("scim-tokens", "Bearer tokens identity providers push SCIM with.")


@webhook_blp.route("/tenants/<slug:slug>/webhook-secrets")
class WebhookSecretCollection(MethodView):
    @webhook_blp.response(200, schemas.WebhookSecret(many=True))
    @documented(webhook_blp, 404)
    def get(self, slug: str) -> list[dict[str, Any]]:
        """List a tenant's webhook secrets (never their values)"""
        with runtime.current().db.read() as session:
            tenants.find(session, slug)
            return [schemas.webhook_secret(row) for row in credentials.webhook_secrets(session)]

    @webhook_blp.arguments(schemas.WebhookSecretCreate, required=False)
    @webhook_blp.response(201, schemas.WebhookSecretCreated)
    @documented(webhook_blp, 400, 404, 409)
    def post(self, data: dict[str, Any], slug: str) -> dict[str, Any]:
        """Add a webhook secret

        Without a body (or without `secret`), a new one is generated. The response shows the
        secret, once.
        """
        rt = runtime.current()
        with rt.db.transaction() as session:
            tenant = tenants.find(session, slug)
            row, secret = credentials.add_webhook_secret(
                session, rt.keyring, tenant, data.get("secret")
            )
            session.flush()
            return schemas.webhook_secret(row, secret)


@webhook_blp.route("/tenants/<slug:slug>/webhook-secrets/<webhook_secret_id:secret_id>")
class WebhookSecretItem(MethodView):
    @webhook_blp.response(204)
    @documented(webhook_blp, 404)
    def delete(self, slug: str, secret_id: str) -> None:
        """Delete a webhook secret"""
        with runtime.current().db.transaction() as session:
            tenants.find(session, slug)
            session.delete(credentials.find_webhook_secret(session, secret_id))


@scim_blp.route("/tenants/<slug:slug>/scim-tokens")
class ScimTokenCollection(MethodView):
    @scim_blp.response(200, schemas.ScimToken(many=True))
    @documented(scim_blp, 404)
    def get(self, slug: str) -> list[dict[str, Any]]:
        """List a tenant's SCIM tokens (never their values)"""
        with runtime.current().db.read() as session:
            tenants.find(session, slug)
            return [schemas.scim_token(row) for row in credentials.scim_tokens(session)]

    @scim_blp.arguments(schemas.ScimTokenCreate, required=False)
    @scim_blp.response(201, schemas.ScimTokenCreated)
    @documented(scim_blp, 400, 404, 409)
    def post(self, data: dict[str, Any], slug: str) -> dict[str, Any]:
        """Add a SCIM token

        Without a body (or without `token`), a new one is generated. The response shows the
        token, once; idbridge keeps only its keyed hash.
        """
        rt = runtime.current()
        with rt.db.transaction() as session:
            tenant = tenants.find(session, slug)
            row, token = credentials.add_scim_token(session, rt.keyring, tenant, data.get("token"))
            session.flush()
            return schemas.scim_token(row, token)


@scim_blp.route("/tenants/<slug:slug>/scim-tokens/<scim_token_id:token_id>")
class ScimTokenItem(MethodView):
    @scim_blp.response(204)
    @documented(scim_blp, 404)
    def delete(self, slug: str, token_id: str) -> None:
        """Delete a SCIM token"""
        with runtime.current().db.transaction() as session:
            tenants.find(session, slug)
            session.delete(credentials.find_scim_token(session, token_id))
