"""What the SCIM tests share: a tenant with a SCIM token, and a client that speaks SCIM."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app import credentials, runtime, tenants
from app.schemas import TenantSchema
from tests.conftest import remember_secret

SCIM_TYPE = "application/scim+json"
IDBRIDGE = "urn:ietf:params:scim:schemas:extension:idbridge:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def make_tenant(app: Flask, slug: str = "acme", **users: Any) -> str:
    """Create a tenant with one SCIM token; return the token."""
    rt = runtime.of(app)
    token = remember_secret(f"scim_{slug}_" + secrets.token_urlsafe(32))
    data: dict[str, Any] = {"slug": slug}
    if users:
        data["users"] = users
    with rt.db.transaction() as session:
        tenant = tenants.create(session, rt.keyring, TenantSchema().load(data))
        credentials.add_scim_token(session, rt.keyring, tenant, token)
    return token


class Scim:
    """A SCIM client for one tenant over the Flask test client."""

    def __init__(self, client: FlaskClient, slug: str, token: str) -> None:
        self.client = client
        self.base = f"/t/{slug}/scim/v2"
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        kwargs: dict[str, Any] = {"headers": self.headers | headers}
        if body is not None:
            kwargs["json"] = body
            kwargs["content_type"] = SCIM_TYPE
        return self.client.open(self.base + path, method=method, **kwargs)

    def get(self, path: str, **headers: str) -> Any:
        return self.call("GET", path, **headers)

    def post(self, path: str, body: Any, **headers: str) -> Any:
        return self.call("POST", path, body, **headers)

    def put(self, path: str, body: Any, **headers: str) -> Any:
        return self.call("PUT", path, body, **headers)

    def patch(self, path: str, operations: list[dict[str, Any]], **headers: str) -> Any:
        return self.call(
            "PATCH", path, {"schemas": [PATCH_OP], "Operations": operations}, **headers
        )

    def delete(self, path: str, **headers: str) -> Any:
        return self.call("DELETE", path, **headers)


def user_body(
    user_name: str,
    external_id: str | None = None,
    customer: str | None = None,
    email: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [CORE_USER, IDBRIDGE], "userName": user_name}
    if external_id:
        body["externalId"] = external_id
    body[IDBRIDGE] = {"customer": customer or f"C-{user_name}"}
    if email:
        body["emails"] = [{"value": email, "type": "work", "primary": True}]
    return body | extra
