"""The three callers on one tenant: a user provisioned over SCIM is the webhooks' User and the
userinfo subject; deactivating it over SCIM blocks it everywhere at once (issue 5's done-when)."""

from __future__ import annotations

import uuid

import pytest

from app import credentials, runtime, tenants
from app.schemas import TenantSchema
from tests.conftest import remember_secret
from tests.idp import IdentityProviderServer
from tests.scim_support import IDBRIDGE, PATCH_OP, Scim, user_body
from tests.webhook_support import sign


@pytest.fixture
def acme(app):
    rt = runtime.of(app)
    with IdentityProviderServer() as idp:
        with rt.db.transaction() as session:
            tenant = tenants.create(
                session, rt.keyring, TenantSchema().load({"slug": "acme", "idp": idp.settings()})
            )
            _, scim_token = credentials.add_scim_token(session, rt.keyring, tenant, None)
            _, webhook_secret = credentials.add_webhook_secret(session, rt.keyring, tenant, None)
        yield idp, remember_secret(scim_token), remember_secret(webhook_secret)


def webhook_get(client, secret: str, body: str):
    headers = sign(secret, body, f"msg_{uuid.uuid4().hex}")
    return client.post("/t/acme/webhooks/users/get", data=body, headers=headers)


def test_a_scim_user_is_the_webhooks_user_and_deactivation_blocks_it(client, acme):
    idp, scim_token, webhook_secret = acme
    scim = Scim(client, "acme", scim_token)
    created = scim.post(
        "/Users", user_body("ada@example.com", "00u1ada", "C-100042", "Ada@Example.com")
    )
    assert created.status_code == 201
    assert created.json[IDBRIDGE]["customer"] == "C-100042"

    got = webhook_get(client, webhook_secret, '{"customer": "C-100042"}')
    assert got.status_code == 200
    user = got.json
    assert (user["id"], user["customer"], user["email"]) == (
        "00u1ada",
        "C-100042",
        "Ada@Example.com",
    )
    assert user["tenant"] == "acme" and user["blocked"] is False

    token = remember_secret(idp.access_token("00u1ada", sid="s-1"))
    info = client.get("/t/acme/oidc/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert info.status_code == 200 and info.json["sub"] == "00u1ada"
    assert info.json["customer"] == "C-100042"

    deactivate = {"op": "replace", "path": "active", "value": False}
    patched = scim.call(
        "PATCH",
        f"/Users/{created.json['id']}",
        {"schemas": [PATCH_OP], "Operations": [deactivate]},
    )
    assert patched.status_code == 200 and patched.json["active"] is False

    again = webhook_get(client, webhook_secret, '{"id": "00u1ada"}')
    assert again.status_code == 200 and again.json["blocked"] is True
    refused = client.get("/t/acme/oidc/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
