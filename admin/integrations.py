"""``/admin/v1/tenants/{slug}/integrations``: upstream systems the broker reaches for users.

The upstream ``client_secret`` is write-only: sealed at rest, shown as ``client_secret_set``.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import ValidationError

from admin import schemas
from admin.common import admin_blueprint, documented, invalid
from app import integrations, runtime, tenants

blp = admin_blueprint("integrations", "Upstream systems (Snowflake, Salesforce, RFC 8693, ...).")


@blp.route("/tenants/<slug:slug>/integrations")
class IntegrationCollection(MethodView):
    @blp.response(200, schemas.Integration(many=True))
    @documented(blp, 404)
    def get(self, slug: str) -> list[dict[str, Any]]:
        """List a tenant's integrations"""
        with runtime.current().db.read() as session:
            tenants.find(session, slug)
            return [schemas.integration(row) for row in integrations.list_all(session)]

    @blp.arguments(schemas.IntegrationCreate)
    @blp.response(201, schemas.Integration)
    @documented(blp, 400, 404, 409)
    def post(self, data: dict[str, Any], slug: str) -> dict[str, Any]:
        """Create an integration"""
        rt = runtime.current()
        with rt.db.transaction() as session:
            tenant = tenants.find(session, slug)
            integration = integrations.create(session, rt.keyring, tenant, data)
            session.flush()
            return schemas.integration(integration)


@blp.route("/tenants/<slug:slug>/integrations/<name:name>")
class IntegrationItem(MethodView):
    @blp.response(200, schemas.Integration)
    @documented(blp, 404)
    def get(self, slug: str, name: str) -> dict[str, Any]:
        """Get an integration"""
        with runtime.current().db.read() as session:
            tenants.find(session, slug)
            return schemas.integration(integrations.find(session, name))

    @blp.arguments(schemas.IntegrationPatch)
    @blp.response(200, schemas.Integration)
    @documented(blp, 400, 404)
    def patch(self, data: dict[str, Any], slug: str, name: str) -> dict[str, Any]:
        """Change an integration

        Fields given replace the stored ones; the result must still satisfy the rules of its
        `kind`. `"client_secret": null` removes the upstream secret.
        """
        rt = runtime.current()
        with rt.db.transaction() as session:
            tenant = tenants.find(session, slug)
            integration = integrations.find(session, name)
            try:
                schemas.check_integration_patch(integration, data)
            except ValidationError as exc:
                invalid(exc.normalized_messages())
            integrations.update(rt.keyring, tenant, integration, data)
            session.flush()
            return schemas.integration(integration)

    @blp.response(204)
    @documented(blp, 404)
    def delete(self, slug: str, name: str) -> None:
        """Delete an integration

        Its grants go with it, and its name leaves every client's `audiences`.
        """
        with runtime.current().db.transaction() as session:
            tenants.find(session, slug)
            integrations.delete(session, integrations.find(session, name))
