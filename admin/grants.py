"""``/admin/v1/tenants/{slug}/grants``: which client may exchange tokens for which integration.

Revoking keeps the grant on record (``revoked_at``); granting again reactivates it. A revoke
is committed before the response, so from then on every instance refuses the exchange.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from admin import schemas
from admin.common import admin_blueprint, documented
from app import clients, integrations, runtime, tenants

blp = admin_blueprint("grants", "Grants: client X may exchange tokens for integration Y.")


@blp.route("/tenants/<slug:slug>/grants")
class GrantCollection(MethodView):
    @blp.arguments(schemas.GrantListQuery, location="query")
    @blp.response(200, schemas.Grant(many=True))
    @documented(blp, 404)
    def get(self, query: dict[str, Any], slug: str) -> list[dict[str, Any]]:
        """List a tenant's grants (active ones unless `include_revoked`)"""
        with runtime.current().db.read() as session:
            tenants.find(session, slug)
            rows = integrations.list_grants(session, query["include_revoked"])
            return [schemas.grant(row) for row in rows]

    @blp.arguments(schemas.GrantCreate)
    @blp.response(201, schemas.Grant, description="Granted (new, or reactivated).")
    @blp.alt_response(200, schema=schemas.Grant, description="Already granted.", success=True)
    @documented(blp, 400, 404, 409)
    def post(self, data: dict[str, Any], slug: str) -> tuple[dict[str, Any], int]:
        """Grant a client an integration

        Idempotent: 201 when the grant is new or was revoked, 200 when it was already active.
        """
        with runtime.current().db.transaction() as session:
            tenants.find(session, slug)
            client = clients.find(session, data["client_id"])
            integration = integrations.find(session, data["integration"])
            row, changed = integrations.grant(session, client, integration)
            session.flush()
            return schemas.grant(row), 201 if changed else 200


@blp.route("/tenants/<slug:slug>/grants/<client_id:client_id>/<name:integration>")
class GrantItem(MethodView):
    @blp.response(204)
    @documented(blp, 404)
    def delete(self, slug: str, client_id: str, integration: str) -> None:
        """Revoke a grant (idempotent)"""
        with runtime.current().db.transaction() as session:
            tenants.find(session, slug)
            row = integrations.find_grant(
                session, clients.find(session, client_id), integrations.find(session, integration)
            )
            integrations.revoke(row)
