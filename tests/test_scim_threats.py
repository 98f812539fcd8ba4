"""THREATS.md, SCIM section, line by line (each test names its line)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest

from app import revocation, runtime, tenants, users
from app.models import utcnow
from tests.scim_support import IDBRIDGE, SCIM_TYPE, Scim, make_tenant, user_body

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


@pytest.fixture
def scim(app, client) -> Scim:
    return Scim(client, "acme", make_tenant(app))


def _create(scim, name, external_id=None, email=None):
    response = scim.post("/Users", user_body(name, external_id, email=email))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _scim_error(response, status):
    assert response.status_code == status, response.get_json()
    assert response.content_type == SCIM_TYPE
    return response.get_json()


def test_filter_on_password_is_refused_and_post_search_works(scim):
    _create(scim, "ada", "00u1")
    refused = _scim_error(scim.get("/Users?filter=" + quote('password eq "x"')), 400)
    assert refused["scimType"] in ("invalidFilter", "sensitive")
    body = {"schemas": [SEARCH], "filter": 'password eq "x"'}
    assert _scim_error(scim.post("/Users/.search", body), 400)["scimType"] in (
        "invalidFilter",
        "sensitive",
    )
    found = scim.post("/Users/.search", {"schemas": [SEARCH], "filter": 'userName eq "ADA"'})
    assert found.status_code == 200 and found.get_json()["totalResults"] == 1


def test_id_meta_password_and_external_id_of_another_are_never_keys(app, scim):
    ada = _create(scim, "ada", "00u1")
    body = user_body("bob", ada["id"], password="S3cret-password!", id=ada["id"])
    body["meta"] = {"created": "2001-01-01T00:00:00Z", "version": 'W/"42"'}
    bob = scim.post("/Users", body).get_json()
    assert bob["id"] != ada["id"] and bob["meta"]["version"] == 'W/"1"'
    assert scim.get(f"/Users/{ada['id']}").get_json()["userName"] == "ada"
    replaced = scim.put(f"/Users/{bob['id']}", body | {"id": ada["id"]})
    assert replaced.status_code == 200 and replaced.get_json()["id"] == bob["id"]
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        stored = users.by_subject(session, ada["id"])
        assert stored.scim_id == bob["id"] and "password" not in stored.scim
        assert "S3cret" not in str(stored.scim)


def test_patch_of_id_or_meta_created_is_400_mutability(scim):
    ada = _create(scim, "ada", "00u1")
    for path in ("id", "meta.created"):
        operation = {"op": "replace", "path": path, "value": "2001-01-01T00:00:00Z"}
        error = _scim_error(scim.patch(f"/Users/{ada['id']}", [operation]), 400)
        assert error["scimType"] == "mutability"


def test_user_name_case_variant_of_another_is_409(scim):
    _create(scim, "Ada", "00u1")
    bob = _create(scim, "bob", "00u2")
    operation = {"op": "replace", "path": "userName", "value": "ADA"}
    assert _scim_error(scim.patch(f"/Users/{bob['id']}", [operation]), 409)["scimType"] == (
        "uniqueness"
    )
    body = user_body("aDA", "00u2")
    assert _scim_error(scim.put(f"/Users/{bob['id']}", body), 409)["scimType"] == "uniqueness"


def test_tenant_a_token_never_reaches_tenant_b(app, client, scim):
    b_token = make_tenant(app, "globex")
    b_user = _create(Scim(client, "globex", b_token), "grace", "00uB")
    a_token = scim.headers["Authorization"].removeprefix("Bearer ")
    # A's token under B's path: not B's token
    _scim_error(Scim(client, "globex", a_token).get(f"/Users/{b_user['id']}"), 401)
    # A's token under A's path with B's user id: no such user, no existence oracle
    _scim_error(scim.get(f"/Users/{b_user['id']}"), 404)
    _scim_error(scim.delete(f"/Users/{b_user['id']}"), 404)
    _scim_error(scim.patch(f"/Users/{b_user['id']}", [{"op": "remove", "path": "title"}]), 404)


def test_an_email_of_an_existing_account_is_not_adopted(app, scim):
    ada = _create(scim, "ada", "00u1", email="ada@example.com")
    error = _scim_error(
        scim.post("/Users", user_body("imposter", "00u9", email="ADA@example.com")), 409
    )
    assert error["scimType"] == "uniqueness"
    bob = _create(scim, "bob", "00u2", email="bob@example.com")
    operation = {
        "op": "replace",
        "path": 'emails[type eq "work"].value',
        "value": "Ada@Example.com",
    }
    _scim_error(scim.patch(f"/Users/{bob['id']}", [operation]), 409)
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        assert users.by_email(session, "ada@example.com").scim_id == ada["id"]
        assert users.by_subject(session, "00u2").email == "bob@example.com"


def test_bulk_above_limits_is_413_as_advertised(scim):
    config = scim.get("/ServiceProviderConfig").get_json()["bulk"]
    operation = {"method": "POST", "path": "/Users", "data": user_body("x", "1")}
    many = {"schemas": [BULK], "Operations": [operation] * (config["maxOperations"] + 1)}
    assert _scim_error(scim.post("/Bulk", many), 413)["status"] == "413"
    big = {
        "schemas": [BULK],
        "Operations": [operation | {"bulkId": "x" * config["maxPayloadSize"]}],
    }
    _scim_error(scim.post("/Bulk", big), 413)
    huge = scim.client.post(  # past the app's request size limit too: still SCIM
        scim.base + "/Bulk",
        data=b"{" + b" " * (5 * 1024 * 1024) + b"}",
        headers=scim.headers | {"Content-Type": SCIM_TYPE},
    )
    _scim_error(huge, 413)
    assert scim.get("/Users").get_json()["totalResults"] == 0


def test_huge_count_is_clamped_and_negative_start_index_is_1(scim):
    for index in range(3):
        _create(scim, f"user{index}", f"00u{index}")
    page = scim.get("/Users?count=1000000000&startIndex=-5").get_json()
    assert page["startIndex"] == 1 and page["itemsPerPage"] == 3 and page["totalResults"] == 3
    config = scim.get("/ServiceProviderConfig").get_json()
    assert config["filter"]["maxResults"] == 200


@pytest.mark.parametrize("how", ["patch", "put", "delete"])
def test_deactivation_or_deletion_revokes_at_once(app, scim, how):
    ada = _create(scim, "ada", "00u1")
    issued = utcnow() - timedelta(seconds=1)
    path = f"/Users/{ada['id']}"
    if how == "patch":
        response = scim.patch(path, [{"op": "replace", "path": "active", "value": False}])
    elif how == "put":
        response = scim.put(path, user_body("ada", "00u1", active=False))
    else:
        response = scim.delete(path)
    assert response.status_code in (200, 204)
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        assert revocation.is_revoked(session, "00u1", None, issued)
        after = utcnow() + revocation.SKEW + timedelta(seconds=5)  # issued past the leeway
        assert not revocation.is_revoked(session, "00u1", None, after)
        if how != "delete":
            assert users.by_subject(session, "00u1").blocked


def test_the_scim_token_never_reaches_a_log(scim):
    from tests.conftest import captured_logs

    scim.get("/Users")
    token = scim.headers["Authorization"].removeprefix("Bearer ")
    assert not any(token in line for line in captured_logs())


def test_a_user_customer_missing_is_400_invalid_value(scim):
    body = user_body("ada", "00u1")
    del body[IDBRIDGE]
    assert _scim_error(scim.post("/Users", body), 400)["scimType"] == "invalidValue"


def test_a_locked_store_is_a_scim_503_with_retry_after_and_nothing_written(tmp_path):
    """THREATS.md, Faults: SQLite locked past the busy timeout, in SCIM's own error form."""
    import sqlite3

    from app import create_app, migrate
    from app.database import Database
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, db_timeout=0.3)
    db = Database(settings)
    migrate.upgrade(db)
    db.dispose()
    flask_app = create_app(settings)
    scim = Scim(flask_app.test_client(), "acme", make_tenant(flask_app))
    blocker = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), timeout=0.1)
    blocker.isolation_level = None
    blocker.execute("BEGIN IMMEDIATE")
    try:
        response = scim.post("/Users", user_body("ada", "00u1"))
        assert _scim_error(response, 503)["status"] == "503"
        assert response.headers["Retry-After"]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert scim.get("/Users").get_json()["totalResults"] == 0
    assert scim.post("/Users", user_body("ada", "00u1")).status_code == 201
    runtime.of(flask_app).db.dispose()
