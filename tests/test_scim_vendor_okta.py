"""Okta provisioning requests, replayed from its SCIM 2.0 protocol reference: PUT for profile
changes and deactivation, ``{"op": "replace", "value": {"active": false}}``, ``password`` and
``groups: []`` in POST, and a group rename re-sent with every membership change."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest

from app import revocation, runtime, tenants, users
from app.models import utcnow
from tests.scim_support import Scim, make_tenant

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def scim(app, client) -> Scim:
    return Scim(client, "okta", make_tenant(app, "okta", customer_required=False))


def _okta_user(**changes):
    return {
        "schemas": [CORE_USER],
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    } | changes


def _stored(app):
    with runtime.of(app).db.read() as session:
        tenants.find(session, "okta")
        return users.by_subject(session, "00ujl29u0le5T6Aj10h7")


def test_lookup_then_create_with_password_and_empty_groups(app, scim):
    query = (
        "/Users?filter=" + quote('userName eq "test.user@okta.local"') + "&startIndex=1&count=100"
    )
    assert scim.get(query).get_json()["totalResults"] == 0
    created = scim.post("/Users", _okta_user())
    assert created.status_code == 201, created.get_json()
    assert "password" not in created.get_json()
    assert "password" not in _stored(app).scim
    assert scim.get(query).get_json()["totalResults"] == 1


def test_put_for_profile_changes_and_deactivation(app, scim):
    user = scim.post("/Users", _okta_user()).get_json()
    issued = utcnow() - timedelta(seconds=1)
    body = _okta_user(id=user["id"], name={"givenName": "Another", "familyName": "User"})
    changed = scim.put(f"/Users/{user['id']}", body)
    assert changed.status_code == 200 and changed.get_json()["name"]["givenName"] == "Another"
    deactivated = scim.put(f"/Users/{user['id']}", body | {"active": False})
    assert deactivated.status_code == 200 and deactivated.get_json()["active"] is False
    assert _stored(app).blocked
    with runtime.of(app).db.read() as session:
        tenants.find(session, "okta")
        assert revocation.is_revoked(session, "00ujl29u0le5T6Aj10h7", None, issued)


def test_patch_replace_value_active_false(app, scim):
    user = scim.post("/Users", _okta_user()).get_json()
    response = scim.call(
        "PATCH",
        f"/Users/{user['id']}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]},
    )
    assert response.status_code == 200 and response.get_json()["active"] is False
    assert _stored(app).blocked


def test_group_push_rename_resent_with_membership_changes(scim):
    user = scim.post("/Users", _okta_user()).get_json()
    group = scim.post(
        "/Groups", {"schemas": [CORE_GROUP], "displayName": "Test SCIMv2", "members": []}
    ).get_json()
    path = f"/Groups/{group['id']}"
    operations = [
        {"op": "replace", "value": {"id": group["id"], "displayName": "Test SCIMv2"}},
        {
            "op": "add",
            "path": "members",
            "value": [{"value": user["id"], "display": "test.user@okta.local"}],
        },
    ]
    response = scim.call("PATCH", path, {"schemas": [PATCH_OP], "Operations": operations})
    assert response.status_code == 200, response.get_json()
    assert [m["value"] for m in response.get_json()["members"]] == [user["id"]]
    operations = [
        {"op": "replace", "value": {"id": group["id"], "displayName": "Renamed"}},
        {"op": "remove", "path": f'members[value eq "{user["id"]}"]'},
    ]
    response = scim.call("PATCH", path, {"schemas": [PATCH_OP], "Operations": operations})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["displayName"] == "Renamed" and "members" not in response.get_json()
    put = scim.put(
        path, {"schemas": [CORE_GROUP], "id": group["id"], "displayName": "Final", "members": []}
    )
    assert put.status_code == 200 and put.get_json()["displayName"] == "Final"
    assert scim.delete(path).status_code == 204
