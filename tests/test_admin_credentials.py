"""Webhook secrets and SCIM tokens: shown once at creation, never listed, not kept in clear."""

from __future__ import annotations

import base64
import os

import pytest
from sqlalchemy import select

from app import credentials, runtime, tenancy
from app.models import ScimToken, Tenant, WebhookSecret
from tests.conftest import remember_secret

WEBHOOK_SECRETS = "/admin/v1/tenants/acme/webhook-secrets"
SCIM_TOKENS = "/admin/v1/tenants/acme/scim-tokens"


@pytest.fixture
def tenant(client, admin_headers):
    response = client.post("/admin/v1/tenants", json={"slug": "acme"}, headers=admin_headers)
    assert response.status_code == 201
    return "acme"


# --- webhook secrets ------------------------------------------------------------------------


def test_a_generated_webhook_secret_is_shown_once_and_sealed(app, client, admin_headers, tenant):
    response = client.post(WEBHOOK_SECRETS, headers=admin_headers)
    assert response.status_code == 201
    body = response.get_json()
    secret = remember_secret(body.pop("secret"))
    assert secret.startswith("whsec_") and body["id"].startswith("whk_")
    assert body["source"] == "api" and body["created_at"]
    listed = client.get(WEBHOOK_SECRETS, headers=admin_headers)
    assert listed.get_json() == [body]
    assert secret not in listed.get_data(as_text=True)
    rt = runtime.of(app)
    with rt.db.read() as session:
        tenancy.cross_tenant(session)
        row = session.scalars(select(WebhookSecret)).one()
        tenant_row = session.scalars(select(Tenant)).one()
        assert secret not in row.secret_sealed and secret != row.fingerprint
        context = credentials.webhook_secret_context(tenant_row)
        assert rt.keyring.open(row.secret_sealed, context) == secret


def test_a_given_webhook_secret_is_kept_and_a_duplicate_refused(client, admin_headers, tenant):
    secret = remember_secret("whsec_" + base64.b64encode(os.urandom(32)).decode())
    response = client.post(WEBHOOK_SECRETS, json={"secret": secret}, headers=admin_headers)
    assert response.status_code == 201 and response.get_json()["secret"] == secret
    again = client.post(WEBHOOK_SECRETS, json={"secret": secret}, headers=admin_headers)
    assert again.status_code == 409
    assert set(again.get_json()["errors"]["json"]) == {"secret"}


def test_a_malformed_webhook_secret_is_a_400_naming_it(client, admin_headers, tenant):
    for secret in ("not-a-whsec", "whsec_" + base64.b64encode(b"short").decode(), "whsec_!!!"):
        response = client.post(WEBHOOK_SECRETS, json={"secret": secret}, headers=admin_headers)
        assert response.status_code == 400, secret
        assert set(response.get_json()["errors"]["json"]) == {"secret"}
    assert client.get(WEBHOOK_SECRETS, headers=admin_headers).get_json() == []


def test_several_webhook_secrets_coexist_and_one_is_deleted(client, admin_headers, tenant):
    ids = []
    for _ in range(2):
        body = client.post(WEBHOOK_SECRETS, json={}, headers=admin_headers).get_json()
        remember_secret(body["secret"])
        ids.append(body["id"])
    assert client.delete(f"{WEBHOOK_SECRETS}/{ids[0]}", headers=admin_headers).status_code == 204
    assert [
        item["id"] for item in client.get(WEBHOOK_SECRETS, headers=admin_headers).get_json()
    ] == ids[1:]
    assert client.delete(f"{WEBHOOK_SECRETS}/{ids[0]}", headers=admin_headers).status_code == 404
    assert client.delete(f"{WEBHOOK_SECRETS}/not-an-id", headers=admin_headers).status_code == 404


# --- SCIM tokens ------------------------------------------------------------------------------


def test_a_generated_scim_token_is_shown_once_and_only_hashed(app, client, admin_headers, tenant):
    response = client.post(SCIM_TOKENS, headers=admin_headers)
    assert response.status_code == 201
    body = response.get_json()
    token = remember_secret(body.pop("token"))
    assert token.startswith("scim_") and body["id"].startswith("sct_")
    assert body["last_used_at"] is None and body["source"] == "api"
    listed = client.get(SCIM_TOKENS, headers=admin_headers)
    assert listed.get_json() == [body] and token not in listed.get_data(as_text=True)
    rt = runtime.of(app)
    with rt.db.read() as session:
        tenancy.cross_tenant(session)
        row = session.scalars(select(ScimToken)).one()
    assert row.token_hash != token and rt.keyring.token_matches(token, row.token_hash)


def test_a_given_scim_token_is_kept_and_a_short_one_refused(client, admin_headers, tenant):
    token = remember_secret("my-own-scim-token-" + "t" * 20)
    response = client.post(SCIM_TOKENS, json={"token": token}, headers=admin_headers)
    assert response.status_code == 201 and response.get_json()["token"] == token
    assert client.post(SCIM_TOKENS, json={"token": token}, headers=admin_headers).status_code == 409
    short = client.post(SCIM_TOKENS, json={"token": "short"}, headers=admin_headers)
    assert short.status_code == 422
    assert set(short.get_json()["errors"]["json"]) == {"token"}


def test_a_scim_token_is_deleted(client, admin_headers, tenant):
    body = client.post(SCIM_TOKENS, headers=admin_headers).get_json()
    remember_secret(body["token"])
    assert client.delete(f"{SCIM_TOKENS}/{body['id']}", headers=admin_headers).status_code == 204
    assert client.get(SCIM_TOKENS, headers=admin_headers).get_json() == []
    assert client.delete(f"{SCIM_TOKENS}/{body['id']}", headers=admin_headers).status_code == 404
