"""SCIM Groups with members, and Bulk (RFC 7644 §3.7), on both stores."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.scim_support import CORE_GROUP, Scim, make_tenant, user_body

BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


@pytest.fixture
def scim(app, client) -> Scim:
    return Scim(client, "acme", make_tenant(app))


def _user(scim, name):
    response = scim.post("/Users", user_body(name, f"ext-{name}"))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _group(scim, name, members=()):
    body = {
        "schemas": [CORE_GROUP],
        "displayName": name,
        "members": [{"value": m} for m in members],
    }
    response = scim.post("/Groups", body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_group_with_members_and_the_users_groups(scim):
    ada, bob = _user(scim, "ada"), _user(scim, "bob")
    group = _group(scim, "Admins", [ada])
    assert [m["value"] for m in group["members"]] == [ada]
    assert group["members"][0]["$ref"].endswith(f"/Users/{ada}")
    added = scim.patch(
        f"/Groups/{group['id']}", [{"op": "add", "path": "members", "value": [{"value": bob}]}]
    )
    assert added.status_code == 200
    assert {m["value"] for m in added.get_json()["members"]} == {ada, bob}
    user = scim.get(f"/Users/{bob}").get_json()
    assert [g["display"] for g in user["groups"]] == ["Admins"]
    removed = scim.patch(
        f"/Groups/{group['id']}", [{"op": "remove", "path": f'members[value eq "{ada}"]'}]
    )
    assert [m["value"] for m in removed.get_json()["members"]] == [bob]
    found = scim.get("/Groups?filter=" + quote(f'members[value eq "{bob}"]')).get_json()
    assert [g["displayName"] for g in found["Resources"]] == ["Admins"]
    found = scim.get("/Groups?filter=" + quote('displayName eq "admins"')).get_json()
    assert found["totalResults"] == 1


def test_group_rules(scim):
    _group(scim, "Admins")
    response = scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "ADMINS"})
    assert response.status_code == 409 and response.get_json()["scimType"] == "uniqueness"
    response = scim.post(
        "/Groups", {"schemas": [CORE_GROUP], "displayName": "X", "members": [{"value": "nope"}]}
    )
    assert response.status_code == 400 and response.get_json()["scimType"] == "invalidValue"


def test_another_tenants_user_cannot_be_a_member(app, client, scim):
    other = Scim(client, "globex", make_tenant(app, "globex"))
    stranger = _user(other, "mallory")
    response = scim.post(
        "/Groups", {"schemas": [CORE_GROUP], "displayName": "X", "members": [{"value": stranger}]}
    )
    assert response.status_code == 400


def test_deleting_a_user_or_group_drops_memberships(scim):
    ada = _user(scim, "ada")
    group = _group(scim, "Admins", [ada])
    assert scim.delete(f"/Users/{ada}").status_code == 204
    assert "members" not in scim.get(f"/Groups/{group['id']}").get_json()
    assert scim.delete(f"/Groups/{group['id']}").status_code == 204
    assert scim.get(f"/Groups/{group['id']}").status_code == 404


def test_bulk_creates_with_bulk_ids_and_each_operation_is_atomic(scim):
    body = {
        "schemas": [BULK],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "u1", "data": user_body("ada", "1")},
            {"method": "POST", "path": "/Users", "bulkId": "u2", "data": user_body("ADA", "2")},
            {
                "method": "POST",
                "path": "/Groups",
                "bulkId": "g1",
                "data": {
                    "schemas": [CORE_GROUP],
                    "displayName": "G",
                    "members": [{"value": "bulkId:u1"}],
                },
            },
        ],
    }
    response = scim.post("/Bulk", body)
    assert response.status_code == 200, response.get_json()
    statuses = [op["status"] for op in response.get_json()["Operations"]]
    assert statuses == ["201", "409", "201"]
    assert scim.get("/Users").get_json()["totalResults"] == 1
    group = scim.get("/Groups").get_json()["Resources"][0]
    assert len(group["members"]) == 1


def test_bulk_above_the_limits_is_413(scim):
    operation = {"method": "POST", "path": "/Users", "data": user_body("x", "1")}
    too_many = {"schemas": [BULK], "Operations": [operation] * 101}
    assert scim.post("/Bulk", too_many).status_code == 413
    padding = {"schemas": [BULK], "Operations": [operation | {"bulkId": "x" * 1_100_000}]}
    assert len(json.dumps(padding)) > 1024 * 1024
    response = scim.post("/Bulk", padding)
    assert response.status_code == 413 and response.get_json()["status"] == "413"
    config = scim.get("/ServiceProviderConfig").get_json()["bulk"]
    assert (config["maxOperations"], config["maxPayloadSize"]) == (100, 1024 * 1024)
