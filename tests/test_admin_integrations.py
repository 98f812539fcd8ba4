"""``/admin/v1/tenants/{slug}/integrations``: upstream systems and their write-only secret."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app import integrations, runtime, tenancy
from app.models import Integration, Tenant
from tests.conftest import remember_secret

INTEGRATIONS = "/admin/v1/tenants/acme/integrations"
CRM = {
    "name": "crm",
    "kind": "rfc8693",
    "flow": "brokered",
    "token_endpoint": "https://upstream.acme.example/oauth/token",
    "client_id": "idbridge",
    "audience": "https://crm.acme.example",
}
SNOWFLAKE = {
    "name": "snowflake-prod",
    "kind": "snowflake",
    "audience": "https://acme-xy12345.snowflakecomputing.com",
    "token_lifetime": 600,
}


@pytest.fixture
def tenant(client, admin_headers):
    response = client.post("/admin/v1/tenants", json={"slug": "acme"}, headers=admin_headers)
    assert response.status_code == 201
    return "acme"


def test_create_get_and_list(client, admin_headers, tenant):
    response = client.post(INTEGRATIONS, json=SNOWFLAKE, headers=admin_headers)
    assert response.status_code == 201
    body = response.get_json()
    assert {key: body[key] for key in SNOWFLAKE} == SNOWFLAKE
    assert body["flow"] is None and body["client_secret_set"] is False
    assert body["user_mapping"] == {"source": "mapping_table"}
    assert client.get(f"{INTEGRATIONS}/snowflake-prod", headers=admin_headers).get_json() == body
    assert client.get(INTEGRATIONS, headers=admin_headers).get_json() == [body]


def test_the_upstream_secret_is_write_only_and_sealed_at_rest(app, client, admin_headers, tenant):
    secret = remember_secret("upstream-client-secret-" + "u" * 16)
    response = client.post(
        INTEGRATIONS, json=CRM | {"client_secret": secret}, headers=admin_headers
    )
    assert response.status_code == 201
    for answer in (
        response,
        client.get(f"{INTEGRATIONS}/crm", headers=admin_headers),
        client.get(INTEGRATIONS, headers=admin_headers),
    ):
        assert secret not in answer.get_data(as_text=True)
        assert "client_secret" not in answer.get_data(as_text=True).replace("client_secret_set", "")
    assert response.get_json()["client_secret_set"] is True
    rt = runtime.of(app)
    with rt.db.read() as session:
        tenancy.cross_tenant(session)
        row = session.scalars(select(Integration)).one()
        tenant_row = session.scalars(select(Tenant)).one()
        sealed = row.client_secret_sealed
        assert sealed.startswith("v1.") and secret not in sealed
        context = integrations.client_secret_context(tenant_row, "crm")
        assert rt.keyring.open(sealed, context) == secret


def test_kind_rules_are_checked_on_create(client, admin_headers, tenant):
    without_flow = {key: value for key, value in CRM.items() if key != "flow"}
    response = client.post(INTEGRATIONS, json=without_flow, headers=admin_headers)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]["json"]) == {"flow"}
    response = client.post(INTEGRATIONS, json=SNOWFLAKE | {"audience": ""}, headers=admin_headers)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]["json"]) == {"audience"}


def test_patch_changes_fields_and_must_keep_the_kind_rules(client, admin_headers, tenant):
    client.post(INTEGRATIONS, json=CRM, headers=admin_headers)
    response = client.patch(
        f"{INTEGRATIONS}/crm",
        json={"token_lifetime": 300, "scope_mapping": {"api": "crm.read"}},
        headers=admin_headers,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_lifetime"] == 300 and body["scope_mapping"] == {"api": "crm.read"}
    assert body["flow"] == "brokered"

    broken = client.patch(f"{INTEGRATIONS}/crm", json={"flow": None}, headers=admin_headers)
    assert broken.status_code == 422
    assert set(broken.get_json()["errors"]["json"]) == {"flow"}
    to_snowflake = client.patch(
        f"{INTEGRATIONS}/crm", json={"kind": "snowflake"}, headers=admin_headers
    )
    assert to_snowflake.status_code == 422
    assert set(to_snowflake.get_json()["errors"]["json"]) == {"flow"}
    assert client.get(f"{INTEGRATIONS}/crm", headers=admin_headers).get_json() == body


def test_patch_sets_and_removes_the_upstream_secret(client, admin_headers, tenant):
    client.post(INTEGRATIONS, json=CRM, headers=admin_headers)
    secret = remember_secret("upstream-client-secret-" + "v" * 16)
    response = client.patch(
        f"{INTEGRATIONS}/crm", json={"client_secret": secret}, headers=admin_headers
    )
    assert response.get_json()["client_secret_set"] is True
    assert secret not in response.get_data(as_text=True)
    removed = client.patch(
        f"{INTEGRATIONS}/crm", json={"client_secret": None}, headers=admin_headers
    )
    assert removed.status_code == 200 and removed.get_json()["client_secret_set"] is False


def test_patch_cannot_rename(client, admin_headers, tenant):
    client.post(INTEGRATIONS, json=CRM, headers=admin_headers)
    response = client.patch(f"{INTEGRATIONS}/crm", json={"name": "erp"}, headers=admin_headers)
    assert response.status_code == 422
    assert response.get_json()["errors"]["json"] == {"name": ["Unknown field."]}


def test_a_duplicate_name_is_a_409(client, admin_headers, tenant):
    assert client.post(INTEGRATIONS, json=CRM, headers=admin_headers).status_code == 201
    again = client.post(INTEGRATIONS, json=CRM, headers=admin_headers)
    assert again.status_code == 409
    assert set(again.get_json()["errors"]["json"]) == {"name"}


def test_deleting_an_integration_removes_it_from_audiences_and_grants(
    client, admin_headers, tenant
):
    client.post(INTEGRATIONS, json=CRM, headers=admin_headers)
    client.post(INTEGRATIONS, json=SNOWFLAKE, headers=admin_headers)
    created = client.post(
        "/admin/v1/tenants/acme/clients",
        json={"client_id": "broker", "audiences": ["snowflake-prod", "crm"]},
        headers=admin_headers,
    )
    remember_secret(created.get_json()["client_secret"])
    for name in ("crm", "snowflake-prod"):
        client.post(
            "/admin/v1/tenants/acme/grants",
            json={"client_id": "broker", "integration": name},
            headers=admin_headers,
        )

    assert client.delete(f"{INTEGRATIONS}/crm", headers=admin_headers).status_code == 204
    assert client.get(f"{INTEGRATIONS}/crm", headers=admin_headers).status_code == 404
    broker = client.get("/admin/v1/tenants/acme/clients/broker", headers=admin_headers)
    assert broker.get_json()["audiences"] == ["snowflake-prod"]
    grants = client.get(
        "/admin/v1/tenants/acme/grants?include_revoked=true", headers=admin_headers
    ).get_json()
    assert [grant["integration"] for grant in grants] == ["snowflake-prod"]
    assert client.delete(f"{INTEGRATIONS}/crm", headers=admin_headers).status_code == 404
