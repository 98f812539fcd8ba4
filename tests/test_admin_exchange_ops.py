"""Operators: bulk mapping import (all or nothing) and signing-key rotation over the admin API."""

from __future__ import annotations

import pytest

from app import integrations, runtime, tenants
from app.schemas import IntegrationSchema, TenantSchema

BASE = "/admin/v1/tenants/acme"


@pytest.fixture
def acme(app):
    rt = runtime.of(app)
    with rt.db.transaction() as session:
        tenant = tenants.create(session, rt.keyring, TenantSchema().load({"slug": "acme"}))
        integrations.create(
            session,
            rt.keyring,
            tenant,
            IntegrationSchema().load(
                {"name": "warehouse", "kind": "snowflake", "audience": "https://x.example"}
            ),
        )


def test_bulk_import_is_all_or_nothing(client, acme, admin_headers):
    url = f"{BASE}/integrations/warehouse/mappings"
    flawed = {
        "mappings": [
            {"user_id": "00u1", "upstream_subject": "ADA"},
            {"user_id": "00u2", "upstream_subject": " "},
            {"user_id": "00u1", "upstream_subject": "ADA2"},
        ]
    }
    refused = client.post(url, json=flawed, headers=admin_headers)
    assert refused.status_code == 422
    assert set(refused.json["errors"]["json"]["mappings"]) == {"1", "2"}
    assert client.get(url, headers=admin_headers).json["items"] == []

    good = {"mappings": [{"user_id": "00u1", "upstream_subject": "ADA"}]}
    imported = client.post(url, json=good, headers=admin_headers)
    assert imported.status_code == 200
    assert imported.json == {"created": 1, "updated": 0, "unchanged": 0}
    assert client.get(f"{url}/00u1", headers=admin_headers).json["upstream_subject"] == "ADA"
    again = client.post(url, json=good, headers=admin_headers).json
    assert again == {"created": 0, "updated": 0, "unchanged": 1}


def test_signing_keys_are_listed_and_rotated(client, acme, admin_headers):
    url = f"{BASE}/signing-keys"
    assert client.get(url, headers=admin_headers).json == []
    first = client.post(url, headers=admin_headers)
    assert first.status_code == 201 and first.json["retires_at"] is None
    second = client.post(url, headers=admin_headers).json
    assert second["activates_at"] > first.json["activates_at"]
    listed = client.get(url, headers=admin_headers).json
    assert [key["kid"] for key in listed] == [second["kid"], first.json["kid"]]
    assert listed[1]["retires_at"] is not None  # the old key retires after the new one signs
    jwks = client.get("/t/acme/jwks.json").json
    assert {key["kid"] for key in jwks["keys"]} == {first.json["kid"], second["kid"]}
    assert all("d" not in key for key in jwks["keys"])
