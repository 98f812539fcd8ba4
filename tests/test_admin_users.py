"""An operator's block (CONTRACT §1 `blocked`): it ends the user's sessions at once."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from app import runtime, tenants
from app.credentials import add_webhook_secret
from tests.conftest import remember_secret
from tests.idp import IdentityProviderServer
from tests.test_logout_closed import clock_at
from tests.test_oidc import make_tenant, make_user, userinfo
from tests.webhook_support import signed


@pytest.fixture
def acme(app):
    with IdentityProviderServer() as idp:
        make_tenant(app, "acme", idp)
        make_user(app, "acme", "00u1")
        yield idp


def test_blocking_ends_sessions_at_once_and_shows_in_the_user(
    app, client, acme, admin_headers, monkeypatch
):
    blocked_at = int(time.time()) - 120  # the block is made two minutes ago
    before = remember_secret(acme.access_token("00u1", sid="s-1", iat=blocked_at - 60))
    assert userinfo(client, before).status_code == 200
    url = "/admin/v1/tenants/acme/users/00u1"
    with clock_at(monkeypatch, datetime.fromtimestamp(blocked_at, UTC)):
        response = client.patch(url, json={"blocked": True}, headers=admin_headers)
    assert response.status_code == 200
    assert response.json["blocked"] is True and response.json["operator_blocked"] is True
    assert response.json["active"] is True and response.json["id"] == "00u1"
    assert userinfo(client, before).status_code == 401
    fresh = remember_secret(acme.access_token("00u1", sid="s-2"))
    assert userinfo(client, fresh).status_code == 401  # blocked users are refused

    rt = runtime.of(app)
    with rt.db.transaction() as session:
        tenant = tenants.find(session, "acme")
        _, secret = add_webhook_secret(session, rt.keyring, tenant, None)
    remember_secret(secret)
    got = signed(client, tenant, "get", {"id": "00u1"}, secret=secret)
    assert got.status_code == 200 and got.json["blocked"] is True

    unblocked = client.patch(url, json={"blocked": False}, headers=admin_headers)
    assert unblocked.json["blocked"] is False
    later = remember_secret(acme.access_token("00u1", sid="s-3"))  # past the leeway
    assert userinfo(client, later).status_code == 200
    inside = remember_secret(acme.access_token("00u1", sid="s-4", iat=blocked_at + 30))
    assert userinfo(client, inside).status_code == 401  # the leeway's price (README, Logout)
    assert userinfo(client, before).status_code == 401  # a block's revocation stays


def test_unknown_users_and_bad_bodies(client, acme, admin_headers):
    url = "/admin/v1/tenants/acme/users/"
    assert client.get(url + "nobody", headers=admin_headers).status_code == 404
    assert client.get(url + "00u1", headers=admin_headers).json["email"] == "00u1@example.com"
    bad = client.patch(url + "00u1", json={"blocked": "maybe"}, headers=admin_headers)
    assert bad.status_code == 422 and "blocked" in bad.json["errors"]["json"]
    extra = client.patch(url + "00u1", json={"blocked": True, "email": "x"}, headers=admin_headers)
    assert extra.status_code == 422 and "email" in extra.json["errors"]["json"]
    assert (
        client.get("/admin/v1/tenants/other/users/00u1", headers=admin_headers).status_code == 404
    )
