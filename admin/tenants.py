"""``/admin/v1/tenants``: tenants and their identity-provider, user, mail and OIDC settings."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from admin import schemas
from admin.common import admin_blueprint, documented
from app import runtime, tenants

blp = admin_blueprint(
    "tenants", "Tenants and their identity-provider, user, mail and OIDC settings."
)


@blp.route("/tenants")
class TenantCollection(MethodView):
    @blp.arguments(schemas.TenantListQuery, location="query")
    @blp.response(200, schemas.TenantPage)
    @documented(blp)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List tenants

        Ordered by slug, `limit` at a time (keyset paging): pass a page's `next` as `after`
        to get the following one.
        """
        with runtime.current().db.read() as session:
            rows = tenants.list_page(session, query["limit"] + 1, query.get("after"))
            page = rows[: query["limit"]]
            return {
                "items": [schemas.tenant_summary(row) for row in page],
                "next": page[-1].slug if len(rows) > len(page) else None,
            }

    @blp.arguments(schemas.TenantCreate)
    @blp.response(201, schemas.Tenant)
    @documented(blp, 400, 409)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a tenant"""
        rt = runtime.current()
        with rt.db.transaction() as session:
            tenant = tenants.create(session, rt.keyring, data)
            session.flush()
            return schemas.tenant(tenant)


@blp.route("/tenants/<slug:slug>")
class TenantItem(MethodView):
    @blp.response(200, schemas.Tenant)
    @documented(blp, 404)
    def get(self, slug: str) -> dict[str, Any]:
        """Get a tenant"""
        with runtime.current().db.read() as session:
            return schemas.tenant(tenants.find(session, slug))

    @blp.arguments(schemas.TenantPatch)
    @blp.response(200, schemas.Tenant)
    @documented(blp, 400, 404)
    def patch(self, data: dict[str, Any], slug: str) -> dict[str, Any]:
        """Change a tenant

        Sections given (`display_name`, `idp`, `users`, `mail`, `oidc`) replace the stored
        ones whole; `"idp": null` removes the identity provider.
        """
        rt = runtime.current()
        with rt.db.transaction() as session:
            tenant = tenants.find(session, slug)
            tenants.update(session, rt.keyring, tenant, data)
            session.flush()
            return schemas.tenant(tenant)

    @blp.response(204)
    @documented(blp, 404)
    def delete(self, slug: str) -> None:
        """Delete a tenant and everything it owns"""
        with runtime.current().db.transaction() as session:
            tenants.delete(session, tenants.find(session, slug))
