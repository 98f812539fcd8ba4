"""``/admin/v1/tenants/{slug}/clients``: OAuth clients, their secrets shown once, rotation."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app import runtime, tenancy
from app.models import Client
from tests.conftest import remember_secret

CLIENTS = "/admin/v1/tenants/acme/clients"
PUBLIC_JWK = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
              "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "k1"}  # fmt: skip


@pytest.fixture
def tenant(client, admin_headers):
    created = client.post("/admin/v1/tenants", json={"slug": "acme"}, headers=admin_headers)
    assert created.status_code == 201
    response = client.post(
        "/admin/v1/tenants/acme/integrations",
        json={"name": "sf", "kind": "snowflake", "audience": "https://sf.example"},
        headers=admin_headers,
    )
    assert response.status_code == 201
    return "acme"


def stored_client(app, client_id: str) -> Client:
    with runtime.of(app).db.read() as session:
        tenancy.cross_tenant(session)
        return session.scalars(select(Client).where(Client.client_id == client_id)).one()


def test_a_generated_secret_is_shown_once_and_only_its_hash_is_kept(
    app, client, admin_headers, tenant
):
    response = client.post(
        CLIENTS,
        json={"client_id": "broker", "audiences": ["sf"], "scopes": ["api"]},
        headers=admin_headers,
    )
    assert response.status_code == 201
    body = response.get_json()
    secret = remember_secret(body.pop("client_secret"))
    assert secret.startswith("cs_") and len(secret) >= 32
    assert body["secret_set"] is True and body["audiences"] == ["sf"] and body["jwks"] is None

    listed = client.get(CLIENTS, headers=admin_headers)
    got = client.get(f"{CLIENTS}/broker", headers=admin_headers)
    assert listed.get_json() == [body] and got.get_json() == body
    for answer in (listed, got):
        assert secret not in answer.get_data(as_text=True)

    row = stored_client(app, "broker")
    stored = [str(getattr(row, column.key)) for column in Client.__table__.columns]
    assert row.secret_hash != secret and not any(secret in value for value in stored)
    assert runtime.of(app).keyring.token_matches(secret, row.secret_hash)


def test_a_given_secret_is_used_and_not_echoed(app, client, admin_headers, tenant):
    secret = remember_secret("my-own-client-secret-" + "q" * 20)
    response = client.post(
        CLIENTS, json={"client_id": "broker", "secret": secret}, headers=admin_headers
    )
    assert response.status_code == 201
    assert "client_secret" not in response.get_json()
    assert secret not in response.get_data(as_text=True)
    assert runtime.of(app).keyring.token_matches(secret, stored_client(app, "broker").secret_hash)


def test_a_short_secret_is_a_422(client, admin_headers, tenant):
    response = client.post(
        CLIENTS, json={"client_id": "broker", "secret": "too-short"}, headers=admin_headers
    )
    assert response.status_code == 422
    assert set(response.get_json()["errors"]["json"]) == {"secret"}


def test_a_jwks_client_gets_no_secret(client, admin_headers, tenant):
    response = client.post(
        CLIENTS,
        json={"client_id": "signer", "jwks": {"keys": [PUBLIC_JWK]}},
        headers=admin_headers,
    )
    assert response.status_code == 201
    body = response.get_json()
    assert "client_secret" not in body and body["secret_set"] is False
    assert body["jwks"] == {"keys": [PUBLIC_JWK]}


def test_a_private_key_in_jwks_is_refused(client, admin_headers, tenant):
    response = client.post(
        CLIENTS,
        json={"client_id": "signer", "jwks": {"keys": [PUBLIC_JWK | {"d": "secret-part"}]}},
        headers=admin_headers,
    )
    assert response.status_code == 422
    assert response.get_json()["errors"]["json"] == {"jwks": ["must hold public keys only"]}


def test_a_duplicate_client_id_is_a_409(client, admin_headers, tenant):
    first = client.post(CLIENTS, json={"client_id": "broker"}, headers=admin_headers)
    remember_secret(first.get_json()["client_secret"])
    again = client.post(CLIENTS, json={"client_id": "broker"}, headers=admin_headers)
    assert again.status_code == 409
    assert set(again.get_json()["errors"]["json"]) == {"client_id"}


def test_an_audience_must_name_an_integration_of_the_tenant(client, admin_headers, tenant):
    response = client.post(
        CLIENTS, json={"client_id": "broker", "audiences": ["nope"]}, headers=admin_headers
    )
    assert response.status_code == 400
    assert response.get_json()["errors"] == {
        "json": {"audiences": ["no integration named 'nope' in this tenant"]}
    }


def test_rotation_returns_a_new_secret_once_and_the_old_one_stops_matching(
    app, client, admin_headers, tenant
):
    old = remember_secret(
        client.post(CLIENTS, json={"client_id": "broker"}, headers=admin_headers).get_json()[
            "client_secret"
        ]
    )
    response = client.post(f"{CLIENTS}/broker/secret", headers=admin_headers)
    assert response.status_code == 200
    new = remember_secret(response.get_json()["client_secret"])
    assert new != old and new.startswith("cs_")
    assert response.get_json()["client_id"] == "broker"
    stored = stored_client(app, "broker").secret_hash
    keyring = runtime.of(app).keyring
    assert keyring.token_matches(new, stored) and not keyring.token_matches(old, stored)
    assert new not in client.get(f"{CLIENTS}/broker", headers=admin_headers).get_data(as_text=True)


def test_patch_changes_the_fields_given(client, admin_headers, tenant):
    remember_secret(
        client.post(
            CLIENTS, json={"client_id": "broker", "scopes": ["api"]}, headers=admin_headers
        ).get_json()["client_secret"]
    )
    response = client.patch(
        f"{CLIENTS}/broker",
        json={"description": "the data broker", "audiences": ["sf"], "may_delegate": True},
        headers=admin_headers,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["description"] == "the data broker" and body["audiences"] == ["sf"]
    assert body["may_delegate"] is True and body["scopes"] == ["api"]
    assert body["secret_set"] is True and "client_secret" not in body
    assert client.get(f"{CLIENTS}/broker", headers=admin_headers).get_json() == body


def test_patch_cannot_rename_a_client_or_set_its_secret(client, admin_headers, tenant):
    remember_secret(
        client.post(CLIENTS, json={"client_id": "broker"}, headers=admin_headers).get_json()[
            "client_secret"
        ]
    )
    for body in ({"client_id": "other"}, {"secret": "s" * 40}):
        response = client.patch(f"{CLIENTS}/broker", json=body, headers=admin_headers)
        assert response.status_code == 422
        assert response.get_json()["errors"]["json"] == {next(iter(body)): ["Unknown field."]}


def test_delete_removes_the_client(client, admin_headers, tenant):
    remember_secret(
        client.post(CLIENTS, json={"client_id": "broker"}, headers=admin_headers).get_json()[
            "client_secret"
        ]
    )
    assert client.delete(f"{CLIENTS}/broker", headers=admin_headers).status_code == 204
    assert client.get(f"{CLIENTS}/broker", headers=admin_headers).status_code == 404
    assert client.delete(f"{CLIENTS}/broker", headers=admin_headers).status_code == 404
    assert client.post(f"{CLIENTS}/broker/secret", headers=admin_headers).status_code == 404
    assert client.get(CLIENTS, headers=admin_headers).get_json() == []


def test_clients_of_an_unknown_tenant_are_a_404(client, admin_headers):
    assert client.get("/admin/v1/tenants/nope/clients", headers=admin_headers).status_code == 404
    response = client.post(
        "/admin/v1/tenants/nope/clients", json={"client_id": "broker"}, headers=admin_headers
    )
    assert response.status_code == 404
