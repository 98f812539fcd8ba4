"""SCIM search: filters translated to SQL, stable paging in SQL, on both stores."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from scim2_models import ScimFilter
from sqlalchemy import select, text

from app import runtime
from app.models import User
from scim.filters import where
from tests.scim_support import SCIM_TYPE, Scim, make_tenant, user_body

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@pytest.fixture
def scim(app, client) -> Scim:
    scim = Scim(client, "acme", make_tenant(app))
    for index, name in enumerate(["Ada", "bob", "carol_x", "dave%", "Eve"]):
        body = user_body(name, f"00u{index}", email=f"{name.strip('%_')}@example.com")
        if name == "Eve":
            body["active"] = False
            body["name"] = {"givenName": "Eve", "familyName": "Smith"}
        assert scim.post("/Users", body).status_code == 201
    return scim


def names(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [user["userName"] for user in response.get_json()["Resources"]]


def search(scim, expression: str) -> list[str]:
    return names(scim.get("/Users?filter=" + quote(expression)))


def test_filters(scim):
    assert search(scim, 'userName eq "ADA"') == ["Ada"]
    assert search(scim, 'externalId eq "00u1"') == ["bob"]
    assert search(scim, 'emails.value eq "BOB@example.com"') == ["bob"]
    assert search(scim, 'emails[value eq "bob@example.com"]') == ["bob"]
    assert search(scim, "active eq false") == ["Eve"]
    assert search(scim, 'userName sw "a" or userName ew "B"') == ["Ada", "bob"]
    assert search(scim, 'not (userName co "a")') == ["bob", "Eve"]
    assert search(scim, 'name.familyName eq "smith"') == ["Eve"]
    assert search(scim, "name.familyName pr") == ["Eve"]
    assert search(scim, 'userName eq "ada" and active eq true') == ["Ada"]
    assert search(scim, 'meta.created gt "2000-01-01T00:00:00Z"') == [
        "Ada",
        "bob",
        "carol_x",
        "dave%",
        "Eve",
    ]


def test_like_patterns_are_escaped(scim):
    assert search(scim, 'userName co "_"') == ["carol_x"]
    assert search(scim, 'userName co "%"') == ["dave%"]
    assert search(scim, 'userName sw "c"') == ["carol_x"]


def test_sensitive_and_unsupported_filters_are_400(scim):
    for expression in ('password eq "x"', 'phoneNumbers.value eq "1"', "userName eq"):
        response = scim.get("/Users?filter=" + quote(expression))
        assert response.status_code == 400, expression
        assert response.get_json()["scimType"] in ("invalidFilter", "sensitive")


def test_paging_is_stable_clamped_and_counted(scim):
    page = scim.get("/Users?startIndex=2&count=2").get_json()
    assert page["totalResults"] == 5 and page["startIndex"] == 2 and page["itemsPerPage"] == 2
    assert [u["userName"] for u in page["Resources"]] == ["bob", "carol_x"]
    page = scim.get("/Users?startIndex=-5&count=1000000000").get_json()
    assert page["startIndex"] == 1 and page["itemsPerPage"] == 5
    assert scim.get("/Users?count=0").get_json()["totalResults"] == 5


def test_total_is_right_when_the_page_runs_out_or_starts_past_the_end(scim):
    """A short page gives its total without a COUNT query; it must still be every match."""
    page = scim.get("/Users?startIndex=4&count=10").get_json()
    assert page["totalResults"] == 5 and len(page["Resources"]) == 2
    page = scim.get("/Users?startIndex=9&count=10").get_json()
    assert page["totalResults"] == 5 and page.get("Resources", []) == []
    found = scim.get("/Users?filter=" + quote('userName eq "bob"')).get_json()
    assert found["totalResults"] == 1 and [u["userName"] for u in found["Resources"]] == ["bob"]


def test_post_search(scim):
    response = scim.post(
        "/Users/.search", {"schemas": [SEARCH], "filter": 'userName eq "bob"', "count": 10}
    )
    assert response.content_type == SCIM_TYPE
    assert names(response) == ["bob"]


@pytest.mark.parametrize(
    "expression", ['userName eq "Ada"', 'externalId eq "00u1"', 'emails.value eq "bob@example.com"']
)
def test_eq_filters_use_an_index_on_postgresql(app, scim, expression):
    """The SQL a filter becomes is answered from an index, like a primary-key read."""
    db = runtime.of(app).db
    if db.is_sqlite:
        pytest.skip("the plan is checked on PostgreSQL")
    statement = select(User).where(User.tenant_id == 1, where(User, ScimFilter(expression).ast))
    sql = str(statement.compile(db.engine, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as connection:
        connection.execute(text("SET enable_seqscan = off"))
        plan = connection.execute(text("EXPLAIN " + sql)).scalars().all()
    assert any("Index" in line for line in plan), plan


def test_post_search_at_the_root_covers_users_then_groups(scim):
    group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ops"}
    assert scim.post("/Groups", group).status_code == 201
    page = scim.post("/.search", {"schemas": [SEARCH], "startIndex": 5, "count": 2}).get_json()
    assert page["totalResults"] == 6
    assert [r.get("userName", r.get("displayName")) for r in page["Resources"]] == ["Eve", "Ops"]
    page = scim.post("/.search", {"schemas": [SEARCH], "filter": 'displayName eq "ops"'})
    assert [r["displayName"] for r in page.get_json()["Resources"]] == ["Ops"]
    refused = scim.post("/.search", {"schemas": [SEARCH], "filter": 'password eq "x"'})
    assert refused.status_code == 400
