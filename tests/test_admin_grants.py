"""``/admin/v1/tenants/{slug}/grants``: granting, revoking, and granting again."""

from __future__ import annotations

import pytest

from tests.conftest import remember_secret

GRANTS = "/admin/v1/tenants/acme/grants"
BROKER_SF = {"client_id": "broker", "integration": "sf"}


@pytest.fixture
def tenant(client, admin_headers):
    assert (
        client.post("/admin/v1/tenants", json={"slug": "acme"}, headers=admin_headers).status_code
        == 201
    )
    client.post(
        "/admin/v1/tenants/acme/integrations",
        json={"name": "sf", "kind": "snowflake", "audience": "https://sf.example"},
        headers=admin_headers,
    )
    created = client.post(
        "/admin/v1/tenants/acme/clients", json={"client_id": "broker"}, headers=admin_headers
    )
    remember_secret(created.get_json()["client_secret"])
    return "acme"


def test_grant_is_201_then_200_when_already_active(client, admin_headers, tenant):
    first = client.post(GRANTS, json=BROKER_SF, headers=admin_headers)
    assert first.status_code == 201
    body = first.get_json()
    assert body["client_id"] == "broker" and body["integration"] == "sf"
    assert body["active"] is True and body["revoked_at"] is None
    again = client.post(GRANTS, json=BROKER_SF, headers=admin_headers)
    assert again.status_code == 200 and again.get_json() == body
    assert client.get(GRANTS, headers=admin_headers).get_json() == [body]


def test_revoke_then_list_then_grant_again(client, admin_headers, tenant):
    client.post(GRANTS, json=BROKER_SF, headers=admin_headers)
    revoked = client.delete(f"{GRANTS}/broker/sf", headers=admin_headers)
    assert revoked.status_code == 204 and revoked.data == b""
    assert client.get(GRANTS, headers=admin_headers).get_json() == []
    (record,) = client.get(
        GRANTS, query_string={"include_revoked": "true"}, headers=admin_headers
    ).get_json()
    assert record["active"] is False and record["revoked_at"] is not None
    # revoking again changes nothing and still answers 204
    assert client.delete(f"{GRANTS}/broker/sf", headers=admin_headers).status_code == 204
    regranted = client.post(GRANTS, json=BROKER_SF, headers=admin_headers)
    assert regranted.status_code == 201
    assert regranted.get_json()["active"] is True and regranted.get_json()["revoked_at"] is None


def test_granting_an_unknown_client_or_integration_is_a_404(client, admin_headers, tenant):
    unknown_client = client.post(
        GRANTS, json={"client_id": "nobody", "integration": "sf"}, headers=admin_headers
    )
    assert unknown_client.status_code == 404
    assert unknown_client.get_json()["message"] == "client 'nobody' does not exist"
    unknown_integration = client.post(
        GRANTS, json={"client_id": "broker", "integration": "nothing"}, headers=admin_headers
    )
    assert unknown_integration.status_code == 404
    assert client.get(GRANTS, headers=admin_headers).get_json() == []


def test_revoking_what_was_never_granted_is_a_404(client, admin_headers, tenant):
    assert client.delete(f"{GRANTS}/broker/sf", headers=admin_headers).status_code == 404
    assert client.delete(f"{GRANTS}/nobody/sf", headers=admin_headers).status_code == 404


def test_a_grant_body_needs_both_names(client, admin_headers, tenant):
    response = client.post(GRANTS, json={"client_id": "broker"}, headers=admin_headers)
    assert response.status_code == 422
    assert response.get_json()["errors"]["json"] == {
        "integration": ["Missing data for required field."]
    }
    bad_flag = client.get(
        GRANTS, query_string={"include_revoked": "perhaps"}, headers=admin_headers
    )
    assert bad_flag.status_code == 422
    assert set(bad_flag.get_json()["errors"]["query"]) == {"include_revoked"}
