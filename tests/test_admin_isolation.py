"""Tenant A's clients, integrations, grants and credentials addressed under tenant B's path
answer 404, exactly like ids that exist nowhere, and stay untouched."""

from __future__ import annotations

import pytest

from tests.conftest import remember_secret


@pytest.fixture
def seeded(client, admin_headers):
    """Tenant `acme` with one of everything; tenant `other`, empty."""
    for slug in ("acme", "other"):
        client.post("/admin/v1/tenants", json={"slug": slug}, headers=admin_headers)
    base = "/admin/v1/tenants/acme"
    client.post(
        f"{base}/integrations",
        json={"name": "sf", "kind": "snowflake", "audience": "https://sf.example"},
        headers=admin_headers,
    )
    broker = client.post(
        f"{base}/clients", json={"client_id": "broker", "audiences": ["sf"]}, headers=admin_headers
    ).get_json()
    remember_secret(broker["client_secret"])
    client.post(
        f"{base}/grants", json={"client_id": "broker", "integration": "sf"}, headers=admin_headers
    )
    webhook = client.post(f"{base}/webhook-secrets", headers=admin_headers).get_json()
    scim = client.post(f"{base}/scim-tokens", headers=admin_headers).get_json()
    remember_secret(webhook["secret"])
    remember_secret(scim["token"])
    return {"webhook_secret_id": webhook["id"], "scim_token_id": scim["id"]}


def snapshot(client, admin_headers) -> dict:
    base = "/admin/v1/tenants/acme"
    return {
        collection: client.get(f"{base}/{collection}", headers=admin_headers).get_json()
        for collection in ("clients", "integrations", "grants", "webhook-secrets", "scim-tokens")
    }


def test_another_tenants_ids_are_not_found_under_this_tenant(client, admin_headers, seeded):
    before = snapshot(client, admin_headers)
    other = "/admin/v1/tenants/other"
    calls = [
        ("GET", f"{other}/clients/broker", None),
        ("PATCH", f"{other}/clients/broker", {"description": "taken over"}),
        ("POST", f"{other}/clients/broker/secret", None),
        ("DELETE", f"{other}/clients/broker", None),
        ("GET", f"{other}/integrations/sf", None),
        ("PATCH", f"{other}/integrations/sf", {"token_lifetime": 60}),
        ("DELETE", f"{other}/integrations/sf", None),
        ("POST", f"{other}/grants", {"client_id": "broker", "integration": "sf"}),
        ("DELETE", f"{other}/grants/broker/sf", None),
        ("DELETE", f"{other}/webhook-secrets/{seeded['webhook_secret_id']}", None),
        ("DELETE", f"{other}/scim-tokens/{seeded['scim_token_id']}", None),
    ]
    for method, path, body in calls:
        response = client.open(path, method=method, json=body, headers=admin_headers)
        assert response.status_code == 404, (method, path)
        assert response.get_json()["code"] == 404
    for collection in ("clients", "integrations", "grants", "webhook-secrets", "scim-tokens"):
        assert client.get(f"{other}/{collection}", headers=admin_headers).get_json() == []
    assert snapshot(client, admin_headers) == before


def test_an_audience_cannot_name_another_tenants_integration(client, admin_headers, seeded):
    response = client.post(
        "/admin/v1/tenants/other/clients",
        json={"client_id": "broker", "audiences": ["sf"]},
        headers=admin_headers,
    )
    assert response.status_code == 400
    assert set(response.get_json()["errors"]["json"]) == {"audiences"}


def test_the_same_names_may_exist_in_two_tenants(client, admin_headers, seeded):
    other = "/admin/v1/tenants/other"
    integration = client.post(
        f"{other}/integrations",
        json={"name": "sf", "kind": "snowflake", "audience": "https://other.example"},
        headers=admin_headers,
    )
    assert integration.status_code == 201
    broker = client.post(f"{other}/clients", json={"client_id": "broker"}, headers=admin_headers)
    assert broker.status_code == 201
    remember_secret(broker.get_json()["client_secret"])
    assert client.delete(f"{other}/integrations/sf", headers=admin_headers).status_code == 204
    acme = client.get("/admin/v1/tenants/acme/integrations/sf", headers=admin_headers)
    assert acme.status_code == 200 and acme.get_json()["audience"] == "https://sf.example"
