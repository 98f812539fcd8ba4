"""SCIM Users over HTTP on both stores: CRUD, the User of CONTRACT §1, ETags, errors."""

from __future__ import annotations

import threading

import pytest

from app import runtime, tenants, users
from tests.scim_support import IDBRIDGE, SCIM_TYPE, Scim, make_tenant, user_body


@pytest.fixture
def scim(app, client) -> Scim:
    return Scim(client, "acme", make_tenant(app))


def test_create_read_and_the_stored_user(app, scim):
    created = scim.post("/Users", user_body("Ada", "00u1", "C-1", "Ada@Example.com"))
    assert created.status_code == 201, created.get_json()
    assert created.content_type == SCIM_TYPE
    body = created.get_json()
    assert body["userName"] == "Ada" and body["externalId"] == "00u1"
    assert body[IDBRIDGE]["customer"] == "C-1"
    assert created.headers["Location"] == body["meta"]["location"]
    assert created.headers["ETag"] == body["meta"]["version"]
    read = scim.get(f"/Users/{body['id']}")
    assert read.status_code == 200 and read.get_json()["id"] == body["id"]
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        user = users.by_subject(session, "00u1")
        assert (user.customer, user.email, user.blocked) == ("C-1", "Ada@Example.com", False)


ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def _error(response, status: int, scim_type: str | None = None) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert response.content_type == SCIM_TYPE
    assert body["schemas"] == [ERROR] and body["status"] == str(status)
    if scim_type:
        assert body.get("scimType") == scim_type, body
    return body


def _create(scim, name, external_id=None, email=None, **extra):
    response = scim.post("/Users", user_body(name, external_id, None, email, **extra))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _stored(app, **lookup):
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        if "subject" in lookup:
            return users.by_subject(session, lookup["subject"])
        return users.by_email(session, lookup["email"])


def test_email_is_the_primary_else_the_first(app, scim):
    body = user_body("bob", "00u2")
    body["emails"] = [
        {"value": "first@example.com", "type": "home"},
        {"value": "work@example.com", "type": "work", "primary": True},
    ]
    assert scim.post("/Users", body).status_code == 201
    assert _stored(app, subject="00u2").email == "work@example.com"
    body = user_body("eve", "00u3")
    body["emails"] = [{"value": "one@example.com"}, {"value": "two@example.com"}]
    assert scim.post("/Users", body).status_code == 201
    assert _stored(app, subject="00u3").email == "one@example.com"


def test_without_the_id_attribute_the_scim_id_is_the_user_id(app, scim):
    created = _create(scim, "noext")
    assert _stored(app, subject=created["id"]).user_name == "noext"


def test_the_tenant_chooses_the_id_and_customer_attributes(app, client):
    token = make_tenant(
        app,
        "globex",
        id_attribute="userName",
        customer_attribute="urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    )
    scim = Scim(client, "globex", token)
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "grace@globex.example",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "E-7"},
    }
    assert scim.post("/Users", body).status_code == 201
    with runtime.of(app).db.read() as session:
        tenants.find(session, "globex")
        assert users.by_subject(session, "grace@globex.example").customer == "E-7"


def test_a_user_without_customer_is_refused_naming_the_attribute(app, scim, client):
    body = user_body("nocust", "00u9")
    del body[IDBRIDGE]
    error = _error(scim.post("/Users", body), 400, "invalidValue")
    assert f"{IDBRIDGE}:customer" in error["detail"]
    optional = Scim(client, "optional", make_tenant(app, "optional", customer_required=False))
    assert optional.post("/Users", body).status_code == 201


def test_uniqueness_answers_409(scim):
    _create(scim, "Ada", "00u1", "ada@example.com")
    for body in (
        user_body("ADA", "00u2"),  # userName, case-insensitively
        user_body("other", "00u1"),  # the IdP id
        user_body("other", "00u3", customer="C-Ada"),  # customer
        user_body("other", "00u4", email="ADA@example.COM"),  # canonical email: no adoption
    ):
        _error(scim.post("/Users", body), 409, "uniqueness")


def test_user_name_changed_to_a_case_variant_of_another_is_409(scim):
    _create(scim, "Ada", "00u1")
    bob = _create(scim, "bob", "00u2")
    _error(
        scim.patch(f"/Users/{bob['id']}", [{"op": "replace", "path": "userName", "value": "aDa"}]),
        409,
        "uniqueness",
    )


def test_id_meta_and_password_sent_by_the_client_are_not_kept(app, scim):
    ada = _create(scim, "Ada", "00u1")
    body = user_body("bob", ada["id"], id="chosen-id", password="Secret-Passw0rd!")
    body["meta"] = {"created": "2000-01-01T00:00:00Z", "version": 'W/"99"'}
    created = scim.post("/Users", body)
    assert created.status_code == 201, created.get_json()
    bob = created.get_json()
    assert bob["id"] not in ("chosen-id", ada["id"]) and "password" not in bob
    assert bob["meta"]["version"] == 'W/"1"' and not bob["meta"]["created"].startswith("2000")
    stored = _stored(app, subject=ada["id"])  # externalId is just the IdP's id, never a key
    assert stored.scim_id == bob["id"] and "password" not in stored.scim
    assert scim.get(f"/Users/{ada['id']}").get_json()["userName"] == "Ada"


def test_patch_of_id_or_meta_created_is_a_mutability_error(scim):
    ada = _create(scim, "Ada", "00u1")
    for path, value in (("id", "x"), ("meta.created", "2000-01-01T00:00:00Z")):
        _error(
            scim.patch(f"/Users/{ada['id']}", [{"op": "replace", "path": path, "value": value}]),
            400,
            "mutability",
        )


def test_etags_if_match_and_if_none_match(scim):
    ada = _create(scim, "Ada", "00u1")
    path = f"/Users/{ada['id']}"
    version = ada["meta"]["version"]
    assert scim.get(path, **{"If-None-Match": version}).status_code == 304
    stale = scim.patch(
        path, [{"op": "replace", "path": "displayName", "value": "A"}], **{"If-Match": 'W/"7"'}
    )
    _error(stale, 412)
    changed = scim.patch(
        path, [{"op": "replace", "path": "displayName", "value": "A"}], **{"If-Match": version}
    )
    assert changed.status_code == 200 and changed.get_json()["displayName"] == "A"
    assert changed.headers["ETag"] != version == 'W/"1"'
    assert scim.get(path, **{"If-None-Match": version}).status_code == 200
    _error(scim.delete(path, **{"If-Match": version}), 412)
    assert scim.delete(path, **{"If-Match": changed.headers["ETag"]}).status_code == 204


def test_put_replaces_and_returns_the_user(scim):
    ada = _create(scim, "Ada", "00u1")
    body = user_body("Ada", "00u1", displayName="Ada L.", title="Countess")
    replaced = scim.put(f"/Users/{ada['id']}", body)
    assert replaced.status_code == 200
    assert replaced.get_json()["title"] == "Countess"
    assert replaced.get_json()["meta"]["version"] == 'W/"2"'


def test_deactivation_blocks_and_revokes_earlier_tokens(app, scim):
    from datetime import timedelta

    from app import revocation
    from app.models import utcnow

    ada = _create(scim, "Ada", "00u1")
    issued = utcnow() - timedelta(seconds=1)
    patched = scim.patch(
        f"/Users/{ada['id']}", [{"op": "replace", "path": "active", "value": False}]
    )
    assert patched.status_code == 200 and patched.get_json()["active"] is False
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        assert users.by_subject(session, "00u1").blocked is True
        assert revocation.is_revoked(session, "00u1", None, issued)


def test_delete_revokes_and_the_user_is_gone(app, scim):
    from datetime import timedelta

    from app import revocation
    from app.models import utcnow

    ada = _create(scim, "Ada", "00u1")
    issued = utcnow() - timedelta(seconds=1)
    assert scim.delete(f"/Users/{ada['id']}").status_code == 204
    _error(scim.get(f"/Users/{ada['id']}"), 404)
    _error(scim.delete(f"/Users/{ada['id']}"), 404)
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        assert revocation.is_revoked(session, "00u1", None, issued)


def test_tokens_are_per_tenant_and_ids_do_not_cross(app, client, scim):
    other_token = make_tenant(app, "globex")
    ada = _create(scim, "Ada", "00u1")
    globex = Scim(client, "globex", other_token)
    _error(globex.get(f"/Users/{ada['id']}"), 404)  # no existence oracle
    wrong = Scim(client, "acme", other_token)
    response = wrong.get(f"/Users/{ada['id']}")
    _error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    _error(Scim(client, "acme", "").get("/Users"), 401)
    _error(Scim(client, "nosuch", other_token).get("/Users"), 401)


def test_discovery(scim, client):
    config = client.get("/t/acme/scim/v2/ServiceProviderConfig")
    assert config.status_code == 200
    body = config.get_json()
    assert body["bulk"] == {"supported": True, "maxOperations": 100, "maxPayloadSize": 1048576}
    assert body["etag"]["supported"] is True and body["patch"]["supported"] is True
    schemas = scim.get("/Schemas").get_json()
    ids = {schema["id"] for schema in schemas["Resources"]}
    assert IDBRIDGE in ids
    extension = scim.get(f"/Schemas/{IDBRIDGE}").get_json()
    names = {attribute["name"] for attribute in extension["attributes"]}
    assert {"customer", "upstreamIdentities"} <= names
    types = scim.get("/ResourceTypes").get_json()
    assert {rt["name"] for rt in types["Resources"]} == {"User", "Group"}
    _error(client.get("/t/nosuch/scim/v2/ServiceProviderConfig"), 404)


def test_upstream_identities_are_stored(app, scim):
    body = user_body("Ada", "00u1")
    body[IDBRIDGE]["upstreamIdentities"] = [{"integration": "snowflake-prod", "subject": "ADA"}]
    created = scim.post("/Users", body).get_json()
    assert created[IDBRIDGE]["upstreamIdentities"] == [
        {"integration": "snowflake-prod", "subject": "ADA"}
    ]
    stored = _stored(app, subject="00u1").scim
    assert stored[IDBRIDGE]["upstreamIdentities"][0]["subject"] == "ADA"


def test_bad_input_is_a_scim_error_never_a_500(scim):
    _error(scim.call("POST", "/Users", None, **{"Content-Type": SCIM_TYPE}), 400)
    response = scim.client.post(
        scim.base + "/Users", data=b"{not json", headers=scim.headers | {"Content-Type": SCIM_TYPE}
    )
    _error(response, 400, "invalidSyntax")
    _error(scim.post("/Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}), 400)
    _error(scim.post("/Users", [1, 2]), 400)


def test_concurrent_patches_without_if_match_all_apply(app):
    """Without ``If-Match`` no PATCH is refused for a concurrent one (412 answers a failed
    precondition only, RFC 7644 §3.14): the row is locked, so the writes apply in turn."""
    token = make_tenant(app)
    first = Scim(app.test_client(), "acme", token)
    user_id = first.post("/Users", user_body("Ada", "00u1", "C-1")).get_json()["id"]
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def patcher(n: int) -> None:
        scim = Scim(app.test_client(), "acme", token)
        barrier.wait(timeout=30)
        for i in range(10):
            operation = {"op": "replace", "path": "displayName", "value": f"{n}-{i}"}
            statuses.append(scim.patch(f"/Users/{user_id}", [operation]).status_code)

    threads = [threading.Thread(target=patcher, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert statuses == [200] * 40
    assert first.get(f"/Users/{user_id}").get_json()["meta"]["version"] == 'W/"41"'
