"""``/admin/v1/tenants/{slug}/clients``: OAuth clients of the tenant's token endpoint.

A generated client secret is in the response that created it (or rotated it) and nowhere
else: idbridge keeps only its keyed hash (RFC 6749 §2.3.1).
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from admin import schemas
from admin.common import admin_blueprint, documented
from app import clients, runtime, tenants

blp = admin_blueprint("clients", "OAuth clients (the data broker, ...) of a tenant.")
ITEM = "/tenants/<slug:slug>/clients/<client_id:client_id>"


@blp.route("/tenants/<slug:slug>/clients")
class ClientCollection(MethodView):
    @blp.response(200, schemas.Client(many=True))
    @documented(blp, 404)
    def get(self, slug: str) -> list[dict[str, Any]]:
        """List a tenant's clients"""
        with runtime.current().db.read() as session:
            tenants.find(session, slug)
            return [schemas.client(row) for row in clients.list_all(session)]

    @blp.arguments(schemas.ClientCreate)
    @blp.response(201, schemas.ClientWithSecret)
    @documented(blp, 400, 404, 409)
    def post(self, data: dict[str, Any], slug: str) -> dict[str, Any]:
        """Create a client

        Unless the body gives a `secret` (or only `jwks`, for `private_key_jwt`), a secret is
        generated and returned as `client_secret`, in this response only.
        """
        rt = runtime.current()
        secret = data.pop("secret", None)
        with rt.db.transaction() as session:
            tenant = tenants.find(session, slug)
            client, generated = clients.create(session, rt.keyring, tenant, data, secret)
            session.flush()
            return schemas.client(client, generated)


@blp.route(ITEM)
class ClientItem(MethodView):
    @blp.response(200, schemas.Client)
    @documented(blp, 404)
    def get(self, slug: str, client_id: str) -> dict[str, Any]:
        """Get a client"""
        with runtime.current().db.read() as session:
            tenants.find(session, slug)
            return schemas.client(clients.find(session, client_id))

    @blp.arguments(schemas.ClientPatch)
    @blp.response(200, schemas.Client)
    @documented(blp, 400, 404)
    def patch(self, data: dict[str, Any], slug: str, client_id: str) -> dict[str, Any]:
        """Change a client"""
        with runtime.current().db.transaction() as session:
            tenants.find(session, slug)
            client = clients.find(session, client_id)
            clients.update(session, client, data)
            session.flush()
            return schemas.client(client)

    @blp.response(204)
    @documented(blp, 404)
    def delete(self, slug: str, client_id: str) -> None:
        """Delete a client and its grants"""
        with runtime.current().db.transaction() as session:
            tenants.find(session, slug)
            clients.delete(session, clients.find(session, client_id))


@blp.route(ITEM + "/secret")
class ClientSecret(MethodView):
    @blp.response(200, schemas.ClientWithSecret)
    @documented(blp, 404)
    def post(self, slug: str, client_id: str) -> dict[str, Any]:
        """Rotate a client's secret

        The new secret replaces the old one at once and is returned as `client_secret`, in
        this response only.
        """
        rt = runtime.current()
        with rt.db.transaction() as session:
            tenants.find(session, slug)
            client = clients.find(session, client_id)
            secret = clients.rotate_secret(rt.keyring, client)
            session.flush()
            return schemas.client(client, secret)
