"""OneLogin provisioning requests: empty strings for unset attributes, ``"id": null``, and
booleans as strings."""

from __future__ import annotations

import pytest

from app import runtime, tenants, users
from tests.scim_support import Scim, make_tenant

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.fixture
def scim(app, client) -> Scim:
    return Scim(client, "onelogin", make_tenant(app, "onelogin", customer_required=False))


def _onelogin_user(**changes):
    return {
        "schemas": [CORE_USER, ENTERPRISE],
        "id": None,
        "userName": "jdoe@onelogin.example",
        "externalId": "",
        "name": {"givenName": "John", "familyName": "Doe", "middleName": "", "formatted": ""},
        "displayName": "",
        "title": "",
        "active": "true",
        "emails": [{"value": "jdoe@onelogin.example", "primary": "true", "type": "work"}],
        "phoneNumbers": [],
        ENTERPRISE: {"department": "", "employeeNumber": ""},
    } | changes


def test_create_with_empty_strings_null_id_and_string_booleans(app, scim):
    created = scim.post("/Users", _onelogin_user())
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["id"] and body["active"] is True
    assert "externalId" not in body and "title" not in body and "displayName" not in body
    with runtime.of(app).db.read() as session:
        tenants.find(session, "onelogin")
        stored = users.by_email(session, "jdoe@onelogin.example")
        assert stored.subject == body["id"]  # no externalId: the SCIM id is the User id
        assert stored.external_id is None and stored.active


def test_update_with_string_false_deactivates(app, scim):
    body = scim.post("/Users", _onelogin_user()).get_json()
    replaced = scim.put(f"/Users/{body['id']}", _onelogin_user(active="false", title=""))
    assert replaced.status_code == 200, replaced.get_json()
    assert replaced.get_json()["active"] is False
    with runtime.of(app).db.read() as session:
        tenants.find(session, "onelogin")
        assert users.by_subject(session, body["id"]).blocked
