"""Microsoft Entra ID provisioning requests, replayed as its documentation shows them
("Tutorial: develop a SCIM endpoint", "Known issues and resolutions with SCIM 2.0 compliance"),
both without and with the ``aadOptscim062020`` feature flag."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from app import runtime, tenants, users
from tests.scim_support import ENTERPRISE, Scim, make_tenant

ADSCIM = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def scim(app, client) -> Scim:
    return Scim(client, "contoso", make_tenant(app, "contoso", customer_required=False))


def _create_user(scim, suffix="ab6490ee", emails=True):
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": f"0a21f0f2-{suffix}",
        "userName": f"Test_User_{suffix}",
        "active": True,
        "meta": {"resourceType": "User"},
        "name": {
            "formatted": "givenName familyName",
            "familyName": "familyName",
            "givenName": "givenName",
        },
        "roles": [],
    }
    if emails:
        body["emails"] = [
            {"primary": True, "type": "work", "value": f"Test_User_{suffix}@testuser.com"}
        ]
    response = scim.post("/Users", body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _patch(scim, path, operations):
    response = scim.call("PATCH", path, {"schemas": [PATCH_OP], "Operations": operations})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_query_by_user_name_then_create(scim):
    found = scim.get("/Users?filter=" + quote('userName eq "Test_User_ab6490ee"'))
    assert found.status_code == 200 and found.get_json()["totalResults"] == 0
    _create_user(scim)
    found = scim.get("/Users?filter=" + quote('userName eq "test_user_AB6490EE"')).get_json()
    assert found["totalResults"] == 1
    by_external = scim.get("/Users?filter=" + quote('externalId eq "0a21f0f2-ab6490ee"'))
    assert by_external.get_json()["totalResults"] == 1


def test_without_the_flag_capitalised_ops_and_string_booleans(app, scim):
    user = _create_user(scim)
    patched = _patch(
        scim,
        f"/Users/{user['id']}",
        [
            {
                "op": "Replace",
                "path": 'emails[type eq "work"].value',
                "value": "updatedEmail@microsoft.com",
            },
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            {"op": "Replace", "path": "active", "value": "False"},
        ],
    )
    assert patched["active"] is False and patched["name"]["familyName"] == "updatedFamilyName"
    assert patched["emails"][0]["value"] == "updatedEmail@microsoft.com"
    with runtime.of(app).db.read() as session:
        tenants.find(session, "contoso")
        stored = users.by_subject(session, "0a21f0f2-ab6490ee")
        assert stored.blocked and stored.email == "updatedEmail@microsoft.com"
    again = _patch(
        scim, f"/Users/{user['id']}", [{"op": "Replace", "path": "active", "value": "True"}]
    )
    assert again["active"] is True


def test_filtered_path_on_an_empty_email_list_adds_the_email(app, scim):
    user = _create_user(scim, "nomail", emails=False)
    patched = _patch(
        scim,
        f"/Users/{user['id']}",
        [{"op": "Add", "path": 'emails[type eq "work"].value', "value": "new@contoso.example"}],
    )
    assert patched["emails"] == [{"type": "work", "value": "new@contoso.example"}]
    with runtime.of(app).db.read() as session:
        tenants.find(session, "contoso")
        assert users.by_subject(session, "0a21f0f2-nomail").email == "new@contoso.example"


def test_with_the_flag_path_less_maps_with_dotted_and_urn_keys(scim):
    user = _create_user(scim)
    patched = _patch(
        scim,
        f"/Users/{user['id']}",
        [
            {
                "op": "replace",
                "value": {
                    "displayName": "Updated Name",
                    "name.givenName": "Updated",
                    f"{ENTERPRISE}:department": "Finance",
                    "active": False,
                },
            }
        ],
    )
    assert patched["displayName"] == "Updated Name" and patched["name"]["givenName"] == "Updated"
    assert patched[ENTERPRISE]["department"] == "Finance" and patched["active"] is False


def test_manager_as_a_bare_string(scim):
    boss = _create_user(scim, "boss")
    user = _create_user(scim)
    patched = _patch(
        scim,
        f"/Users/{user['id']}",
        [{"op": "Add", "path": f"{ENTERPRISE}:manager", "value": boss["id"]}],
    )
    assert patched[ENTERPRISE]["manager"]["value"] == boss["id"]


def test_groups_with_the_adscim_schema_and_member_removal_by_value(scim):
    ada, bob = _create_user(scim, "ada"), _create_user(scim, "bob")
    created = scim.post(
        "/Groups",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", ADSCIM],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "Group_1",
            "meta": {"resourceType": "Group"},
        },
    )
    assert created.status_code == 201, created.get_json()
    group = created.get_json()
    path = f"/Groups/{group['id']}"
    _patch(
        scim,
        path,
        [
            {
                "op": "Add",
                "path": "members",
                "value": [{"$ref": None, "value": ada["id"]}, {"$ref": None, "value": bob["id"]}],
            }
        ],
    )
    # without the flag: removal by a value list
    left = _patch(
        scim,
        path,
        [{"op": "Remove", "path": "members", "value": [{"$ref": None, "value": ada["id"]}]}],
    )
    assert [m["value"] for m in left["members"]] == [bob["id"]]
    # with the flag: removal by a filtered path
    left = _patch(scim, path, [{"op": "remove", "path": f'members[value eq "{bob["id"]}"]'}])
    assert "members" not in left
    found = scim.get(
        "/Groups?excludedAttributes=members&filter=" + quote('displayName eq "Group_1"')
    )
    assert found.get_json()["Resources"][0]["id"] == group["id"]
    assert "members" not in found.get_json()["Resources"][0]


def test_delete_user(scim):
    user = _create_user(scim)
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
