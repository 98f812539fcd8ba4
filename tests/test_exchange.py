"""Token exchange over HTTP (CONTRACT §3), against a real identity provider, a fake Snowflake
that checks tokens the way External OAuth does, and both stores.

The broker's three outcomes end to end (a Snowflake token accepted for the mapped user,
``user_not_provisioned`` for an unmapped one, a revoked grant refused on the next call), each
in the audit log; then THREATS.md "Token exchange" case by case.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.serving import make_server

from app import clients, create_app, integrations, revocation, runtime, signing, tenants
from app.models import User, utcnow
from app.schemas import ClientSchema, IntegrationSchema, TenantSchema
from app.users import canonical_email
from tests.conftest import empty_tables, make_settings, remember_secret
from tests.fake_snowflake import FakeSnowflake
from tests.idp import IdentityProviderServer

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
ACCOUNT = "https://acme-xy12345.snowflakecomputing.com"
BROKER_SECRET = remember_secret("cs_broker-secret-" + "b" * 32)
OTHER_SECRET = remember_secret("cs_other-secret-" + "o" * 32)


@dataclass
class Live:
    app: Flask
    url: str

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()


def _serve(tmp_path: Any, database_url: str) -> Iterator[Live]:
    holder: dict[str, Flask] = {}
    server = make_server(
        "127.0.0.1", 0, lambda environ, start: holder["app"](environ, start), threaded=True
    )
    url = f"http://127.0.0.1:{server.server_port}"
    flask_app = create_app(make_settings(tmp_path, database_url=database_url, public_url=url))
    empty_tables(runtime.of(flask_app).db)
    holder["app"] = flask_app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Live(flask_app, url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        runtime.of(flask_app).db.dispose()


@pytest.fixture
def live(tmp_path, database_url) -> Iterator[Live]:
    yield from _serve(tmp_path, database_url)


@pytest.fixture
def idp() -> Iterator[IdentityProviderServer]:
    with IdentityProviderServer() as server:
        yield server


def seed_tenant(flask_app: Flask, slug: str, idp: IdentityProviderServer | None) -> None:
    """A tenant with users 00u1 (mapped to ADA) and 00u2 (unmapped), a Snowflake and a JWT
    integration, and the broker granted the Snowflake one."""
    rt = runtime.of(flask_app)
    data: dict[str, Any] = {"slug": slug}
    if idp is not None:
        data["idp"] = idp.settings()
    with rt.db.transaction() as session:
        tenant = tenants.create(session, rt.keyring, TenantSchema().load(data))
        for subject in ("00u1", "00u2", "00u3"):
            email = f"{subject}@example.com"
            session.add(
                User(
                    scim_id=f"scim-{subject}",
                    subject=subject,
                    user_name=email,
                    user_name_canonical=email,
                    customer=f"C-{subject}",
                    email=email,
                    email_canonical=canonical_email(email),
                )
            )
        snowflake = integrations.create(
            session,
            rt.keyring,
            tenant,
            IntegrationSchema().load(
                {
                    "name": "snowflake-prod",
                    "kind": "snowflake",
                    "audience": ACCOUNT,
                    "scope_mapping": {"analyst": "ANALYST"},
                    "token_lifetime": 600,
                }
            ),
        )
        integrations.create(
            session,
            rt.keyring,
            tenant,
            IntegrationSchema().load(
                {
                    "name": "lake",
                    "kind": "jwt",
                    "audience": "https://lake.example",
                    "user_mapping": {"source": "template", "template": "user:${subject}"},
                }
            ),
        )
        broker, _ = clients.create(
            session,
            rt.keyring,
            tenant,
            ClientSchema().load(
                {
                    "client_id": "broker",
                    "audiences": ["snowflake-prod", "lake"],
                    "scopes": ["analyst", "session:role:REPORTER", "read"],
                }
            ),
            secret=BROKER_SECRET,
        )
        other, _ = clients.create(
            session,
            rt.keyring,
            tenant,
            ClientSchema().load({"client_id": "other", "audiences": []}),
            secret=OTHER_SECRET,
        )
        integrations.grant(session, broker, snowflake)
        integrations.grant(session, broker, integrations.find(session, "lake"))
        integrations.grant(session, other, snowflake)


def put_mapping(client: FlaskClient, headers: dict[str, str], subject: str, login: str) -> Any:
    return client.put(
        f"/admin/v1/tenants/acme/integrations/snowflake-prod/mappings/{subject}",
        json={"upstream_subject": login},
        headers=headers,
    )


def basic(client_id: str = "broker", secret: str = BROKER_SECRET) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def exchange_form(token: str, **extra: Any) -> dict[str, Any]:
    return {
        "grant_type": GRANT,
        "subject_token": token,
        "subject_token_type": ACCESS,
        "audience": "snowflake-prod",
        "scope": "analyst",
    } | extra


@pytest.fixture
def acme(live, idp, admin_headers) -> Live:
    seed_tenant(live.app, "acme", idp)
    assert put_mapping(live.client, admin_headers, "00u1", "ada").status_code == 201
    return live


def audit_events(http: FlaskClient, headers: dict[str, str], **query: Any) -> list[dict]:
    response = http.get("/admin/v1/tenants/acme/audit", query_string=query, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


# --- the broker's three outcomes, end to end over HTTP ------------------------------------


def test_the_fake_snowflake_accepts_the_exchanged_token_for_the_mapped_user(
    acme, idp, admin_headers
):
    response = requests.post(
        f"{acme.url}/t/acme/oauth/token",
        data=exchange_form(idp.access_token("00u1")),
        headers=basic(),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    token = remember_secret(body["access_token"])
    assert body["issued_token_type"] == ACCESS
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 600
    assert "scope" not in body  # exactly what was asked

    with FakeSnowflake(
        issuer=f"{acme.url}/t/acme",
        jwks_url=f"{acme.url}/t/acme/jwks.json",
        audiences=[ACCOUNT],
        users={"ADA": ["ANALYST"], "GRACE": ["ANALYST"]},
    ) as snowflake:
        accepted = snowflake.query(token)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["data"] == [["ADA", "ANALYST"]]

        # a Snowflake account with no user ADA gives its documented refusal
        snowflake.users.pop("ADA")
        refused = snowflake.query(token)
        assert refused.status_code == 401
        assert refused.json()["code"] == "390303"
        assert list(snowflake.failures.values()) == ["EXTERNAL_OAUTH_USER_NOT_FOUND"]

    (event,) = audit_events(acme.client, admin_headers)
    assert event | {"at": None, "id": None, "request_id": None} == {
        "id": None,
        "at": None,
        "request_id": None,
        "action": "token_exchange",
        "client_id": "broker",
        "actors": [],
        "user": "00u1",
        "integration": "snowflake-prod",
        "audience": "snowflake-prod",
        "scope": "analyst",
        "outcome": "success",
        "error_code": "",
        "reason": "",
    }
    assert event["request_id"] == response.headers["X-Request-Id"]


def test_an_unmapped_user_is_not_provisioned(acme, idp, admin_headers):
    response = acme.client.post(
        "/t/acme/oauth/token", data=exchange_form(idp.access_token("00u2")), headers=basic()
    )
    assert response.status_code == 400
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {
        "error": "user_not_provisioned",
        "error_description": "the user has no identity in integration 'snowflake-prod'",
        "integration": "snowflake-prod",
        "retryable": False,
    }
    (event,) = audit_events(acme.client, admin_headers)
    assert (event["outcome"], event["error_code"], event["user"]) == (
        "failure",
        "user_not_provisioned",
        "00u2",
    )


@pytest.mark.parametrize("who", ["unknown", "blocked"])
def test_an_unknown_or_blocked_user_is_not_provisioned(acme, idp, who):
    subject = "00u9" if who == "unknown" else "00u1"
    if who == "blocked":
        with runtime.of(acme.app).db.transaction() as session:
            tenants.find(session, "acme")
            user = session.query(User).filter(User.subject == "00u1").one()
            user.operator_blocked = True
    response = acme.client.post(
        "/t/acme/oauth/token", data=exchange_form(idp.access_token(subject)), headers=basic()
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "user_not_provisioned"


def test_a_revoked_grant_is_refused_on_the_next_call_and_its_cache_is_purged(
    acme, idp, admin_headers
):
    form = exchange_form(idp.access_token("00u1"))
    first = acme.client.post("/t/acme/oauth/token", data=form, headers=basic())
    again = acme.client.post("/t/acme/oauth/token", data=form, headers=basic())
    assert first.status_code == again.status_code == 200
    assert again.get_json()["access_token"] == first.get_json()["access_token"]  # cached

    revoked = acme.client.delete(
        "/admin/v1/tenants/acme/grants/broker/snowflake-prod", headers=admin_headers
    )
    assert revoked.status_code == 204
    refused = acme.client.post("/t/acme/oauth/token", data=form, headers=basic())
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "unauthorized_client"
    assert refused.headers["Cache-Control"] == "no-store"

    # granting again gives a fresh token: the cached one went with the grant
    assert (
        acme.client.post(
            "/admin/v1/tenants/acme/grants",
            json={"client_id": "broker", "integration": "snowflake-prod"},
            headers=admin_headers,
        ).status_code
        == 201
    )
    fresh = acme.client.post("/t/acme/oauth/token", data=form, headers=basic())
    assert fresh.status_code == 200
    assert fresh.get_json()["access_token"] != first.get_json()["access_token"]

    outcomes = [
        (event["outcome"], event["error_code"])
        for event in audit_events(acme.client, admin_headers)
    ]
    assert outcomes == [
        ("success", ""),
        ("failure", "unauthorized_client"),
        ("success", ""),
        ("success", ""),
    ]


# --- THREATS.md "Token exchange", case by case ----------------------------------------------


@pytest.mark.parametrize(
    ("headers", "form_extra"),
    [
        ({}, {}),
        (basic(secret="cs_wrong-" + "w" * 40), {}),
        (basic(client_id="nobody"), {}),
        ({}, {"client_id": "broker", "client_secret": "cs_wrong-" + "w" * 40}),
        ({"Authorization": "Basic !!!not-base64"}, {}),
        ({"Authorization": "Bearer something"}, {}),
    ],
    ids=["none", "wrong-secret", "unknown-client", "wrong-post", "garbage-basic", "bearer"],
)
def test_client_authentication_is_required(acme, idp, admin_headers, headers, form_extra):
    form = exchange_form(idp.access_token("00u1"), **form_extra)
    response = acme.client.post("/t/acme/oauth/token", data=form, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.headers["Cache-Control"] == "no-store"
    assert audit_events(acme.client, admin_headers)[0]["error_code"] == "invalid_client"


def test_client_secret_post_works_and_both_methods_at_once_do_not(acme, idp):
    post = exchange_form(idp.access_token("00u1"), client_id="broker", client_secret=BROKER_SECRET)
    assert acme.client.post("/t/acme/oauth/token", data=post).status_code == 200
    both = acme.client.post("/t/acme/oauth/token", data=post, headers=basic())
    assert both.status_code == 400
    assert both.get_json()["error"] == "invalid_request"


def test_another_tenants_client_is_unknown_here(acme, idp, live):
    seed_tenant(live.app, "globex", None)
    response = acme.client.post(
        "/t/globex/oauth/token", data=exchange_form(idp.access_token("00u1")), headers=basic()
    )
    # same client_id, same secret, but the globex tenant trusts no IdP: the token is refused
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    other = acme.client.post(
        "/t/globex/oauth/token",
        data=exchange_form(idp.access_token("00u1")),
        headers=basic(secret=OTHER_SECRET),
    )
    assert other.status_code == 401


@pytest.mark.parametrize(
    "target",
    [
        {"audience": "crm"},  # no such integration
        {"audience": "lake", "scope": "read"} | {"client": "other"},  # not in other's list
        {"resource": "https://elsewhere.example"},
        {"audience": ["snowflake-prod", "lake"]},
    ],
    ids=["unknown", "not-allowed", "unknown-resource", "two-integrations"],
)
def test_an_audience_outside_the_allow_list_is_invalid_target(acme, idp, target):
    target = dict(target)
    who = target.pop("client", "broker")
    secret = BROKER_SECRET if who == "broker" else OTHER_SECRET
    form = exchange_form(idp.access_token("00u1")) | target
    if "resource" in target:
        form.pop("audience")
    response = acme.client.post("/t/acme/oauth/token", data=form, headers=basic(who, secret))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_target"


def test_the_audience_may_be_the_upstream_uri_or_a_resource(acme, idp):
    for target in ({"audience": ACCOUNT}, {"resource": ACCOUNT, "audience": None}):
        form = {k: v for k, v in (exchange_form(idp.access_token("00u1")) | target).items() if v}
        response = acme.client.post("/t/acme/oauth/token", data=form, headers=basic())
        assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("scope", ["admin", "analyst admin", "read"])
def test_a_scope_beyond_the_allow_list_or_the_integration_is_invalid_scope(acme, idp, scope):
    response = acme.client.post(
        "/t/acme/oauth/token",
        data=exchange_form(idp.access_token("00u1"), scope=scope),
        headers=basic(),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_scope"


def test_roles_come_from_the_scope_mapping_or_the_session_role_scope(acme, idp, live):
    response = acme.client.post(
        "/t/acme/oauth/token",
        data=exchange_form(idp.access_token("00u1"), scope="analyst session:role:REPORTER"),
        headers=basic(),
    )
    assert response.status_code == 200
    claims = jwt.decode(
        remember_secret(response.get_json()["access_token"]), options={"verify_signature": False}
    )
    assert claims["scp"] == ["session:role:ANALYST", "session:role:REPORTER"]
    assert claims["sub"] == "ada"
    assert claims["iss"] == f"{live.url}/t/acme"
    assert claims["aud"] == ACCOUNT
    assert claims["nbf"] <= claims["iat"] < claims["exp"]


def _other_issuer_token() -> str:
    with IdentityProviderServer() as stranger:
        return stranger.access_token("00u1")


@pytest.mark.parametrize(
    "make_token",
    [
        lambda idp: idp.access_token("00u1", audience="api://elsewhere"),
        lambda idp: idp.access_token("00u1", lifetime=-600),
        lambda idp: _other_issuer_token(),
        lambda idp: idp.id_token("00u1"),
        lambda idp: idp.refresh_token("00u1"),
        lambda idp: "not-a-jwt",
    ],
    ids=["other-audience", "expired", "untrusted-issuer", "id-token", "refresh-token", "garbage"],
)
def test_a_bad_subject_token_is_invalid_request(acme, idp, admin_headers, make_token):
    response = acme.client.post(
        "/t/acme/oauth/token", data=exchange_form(make_token(idp)), headers=basic()
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    event = audit_events(acme.client, admin_headers)[0]
    assert (event["outcome"], event["error_code"]) == ("failure", "invalid_request")


def test_idbridges_own_token_fed_back_is_refused(acme, idp):
    issued = acme.client.post(
        "/t/acme/oauth/token",
        data=exchange_form(idp.access_token("00u1"), audience="lake", scope="read"),
        headers=basic(),
    )
    assert issued.status_code == 200
    own = remember_secret(issued.get_json()["access_token"])
    response = acme.client.post("/t/acme/oauth/token", data=exchange_form(own), headers=basic())
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "extra",
    [
        {"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"},
        {"subject_token_type": "urn:example:made-up"},
        {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
        {"requested_token_type": "urn:example:made-up"},
        {"actor_token": "x.y.z", "actor_token_type": ACCESS},
        {"subject_token": ""},
    ],
    ids=[
        "id-token-type",
        "made-up-type",
        "refresh-requested",
        "unknown-requested",
        "actor",
        "empty",
    ],
)
def test_token_types_that_lie_or_are_unknown_are_invalid_request(acme, idp, extra):
    response = acme.client.post(
        "/t/acme/oauth/token",
        data=exchange_form(idp.access_token("00u1"), **extra),
        headers=basic(),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_other_grant_types_and_malformed_requests_are_refused(acme, idp):
    wrong = acme.client.post(
        "/t/acme/oauth/token", data={"grant_type": "client_credentials"}, headers=basic()
    )
    assert (wrong.status_code, wrong.get_json()["error"]) == (400, "unsupported_grant_type")
    as_json = acme.client.post("/t/acme/oauth/token", json=exchange_form("x"), headers=basic())
    assert (as_json.status_code, as_json.get_json()["error"]) == (400, "invalid_request")
    repeated = acme.client.post(
        "/t/acme/oauth/token",
        data=f"grant_type={GRANT}&grant_type={GRANT}",
        content_type="application/x-www-form-urlencoded",
        headers=basic(),
    )
    assert (repeated.status_code, repeated.get_json()["error"]) == (400, "invalid_request")
    nowhere = acme.client.post("/t/nowhere/oauth/token", data=exchange_form("x"), headers=basic())
    assert nowhere.status_code == 404
    assert nowhere.headers["Cache-Control"] == "no-store"


def test_a_logout_ends_the_exchange_and_purges_the_users_cached_tokens(acme, idp):
    form = exchange_form(idp.access_token("00u1", sid="s-1", iat=int(time.time()) - 180))
    first = acme.client.post("/t/acme/oauth/token", data=form, headers=basic())
    assert first.status_code == 200
    with acme.app.app_context(), runtime.of(acme.app).db.transaction() as session:
        tenants.find(session, "acme")
        # a logout two minutes ago: after the token, and more than the leeway before now
        revocation.revoke(session, "00u1", "logout", at=utcnow() - 2 * revocation.SKEW)
    refused = acme.client.post("/t/acme/oauth/token", data=form, headers=basic())
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "invalid_request"
    later = exchange_form(idp.access_token("00u1", sid="s-2"))
    fresh = acme.client.post("/t/acme/oauth/token", data=later, headers=basic())
    assert fresh.status_code == 200
    assert fresh.get_json()["access_token"] != first.get_json()["access_token"]


def test_a_failed_audit_write_fails_the_exchange(acme, idp):
    db = runtime.of(acme.app).db
    with db.engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_events RENAME TO audit_events_away"))
    try:
        response = acme.client.post(
            "/t/acme/oauth/token", data=exchange_form(idp.access_token("00u1")), headers=basic()
        )
    finally:
        with db.engine.begin() as connection:
            connection.execute(text("ALTER TABLE audit_events_away RENAME TO audit_events"))
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert "access_token" not in response.get_json()
    assert response.headers["Retry-After"]


# --- the JWT handler, user-mapping rules, the mapping query ----------------------------------


def test_the_jwt_handler_mints_an_rfc9068_token_verifiable_with_the_jwks(acme, idp):
    response = acme.client.post(
        "/t/acme/oauth/token",
        data=exchange_form(idp.access_token("00u3"), audience="lake", scope="read"),
        headers=basic(),
    )
    assert response.status_code == 200
    token = remember_secret(response.get_json()["access_token"])
    keys = requests.get(f"{acme.url}/t/acme/jwks.json", timeout=10).json()["keys"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    key = next(k for k in keys if k["kid"] == header["kid"])
    claims = jwt.decode(
        token,
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience="https://lake.example",
        issuer=f"{acme.url}/t/acme",
    )
    assert claims["sub"] == "user:00u3"  # the template rule
    assert claims["client_id"] == "broker"
    assert claims["scope"] == "read"
    assert claims["jti"]


def test_the_mapping_query_answers_from_the_same_code_path(acme, admin_headers):
    ok = acme.client.get(
        "/t/acme/oauth/mappings",
        query_string={"integration": "snowflake-prod", "subject": "00u1"},
        headers=basic(),
    )
    assert ok.status_code == 200
    assert ok.headers["Cache-Control"] == "no-store"
    assert ok.get_json() == {
        "integration": "snowflake-prod",
        "subject": "00u1",
        "upstream_subject": "ada",
        "provisioned": True,
    }
    missing = acme.client.get(
        "/t/acme/oauth/mappings",
        query_string={"integration": "snowflake-prod", "subject": "00u2"},
        headers=basic(),
    )
    assert missing.status_code == 404
    assert missing.get_json()["error"] == "user_not_provisioned"
    assert missing.get_json()["retryable"] is False
    anonymous = acme.client.get(
        "/t/acme/oauth/mappings", query_string={"integration": "snowflake-prod", "subject": "00u1"}
    )
    assert anonymous.status_code == 401
    not_granted = acme.client.get(
        "/t/acme/oauth/mappings",
        query_string={"integration": "lake", "subject": "00u1"},
        headers=basic("other", OTHER_SECRET),
    )
    assert not_granted.status_code == 400
    assert not_granted.get_json()["error"] == "invalid_target"
    actions = {event["action"] for event in audit_events(acme.client, admin_headers)}
    assert actions == {"mapping_query"}


def test_mappings_admin_crud(acme, admin_headers):
    base = "/admin/v1/tenants/acme/integrations/snowflake-prod/mappings"
    assert put_mapping(acme.client, admin_headers, "00u1", "ada.l").status_code == 200
    assert put_mapping(acme.client, admin_headers, "00u2", "grace").status_code == 201
    page = acme.client.get(base, query_string={"limit": 1}, headers=admin_headers).get_json()
    assert page == {
        "items": [{"subject": "00u1", "upstream_subject": "ada.l", "source": "api"}],
        "next": "00u1",
    }
    rest = acme.client.get(
        base, query_string={"limit": 1, "after": "00u1"}, headers=admin_headers
    ).get_json()
    assert [item["subject"] for item in rest["items"]] == ["00u2"]
    assert acme.client.delete(f"{base}/00u2", headers=admin_headers).status_code == 204
    assert acme.client.get(f"{base}/00u2", headers=admin_headers).status_code == 404
    assert acme.client.get(f"{base}/00u1").status_code == 401
    assert (
        acme.client.get(
            "/admin/v1/tenants/acme/integrations/nothing/mappings", headers=admin_headers
        ).status_code
        == 404
    )


def test_the_audit_log_filters_and_pages_newest_first(acme, idp, admin_headers):
    for subject in ("00u1", "00u2", "00u1"):
        acme.client.post(
            "/t/acme/oauth/token", data=exchange_form(idp.access_token(subject)), headers=basic()
        )
    everything = audit_events(acme.client, admin_headers)
    assert [e["user"] for e in everything] == ["00u1", "00u2", "00u1"]
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    assert [e["user"] for e in audit_events(acme.client, admin_headers, outcome="failure")] == [
        "00u2"
    ]
    assert len(audit_events(acme.client, admin_headers, user="00u1", client="broker")) == 2
    assert audit_events(acme.client, admin_headers, integration="lake") == []
    assert audit_events(acme.client, admin_headers, since="2999-01-01T00:00:00Z") == []
    first = acme.client.get(
        "/admin/v1/tenants/acme/audit", query_string={"limit": 2}, headers=admin_headers
    ).get_json()
    assert len(first["items"]) == 2 and first["next"] == first["items"][-1]["id"]
    second = acme.client.get(
        "/admin/v1/tenants/acme/audit",
        query_string={"limit": 2, "before": first["next"]},
        headers=admin_headers,
    ).get_json()
    assert [e["id"] for e in second["items"]] == [everything[2]["id"]]
    assert second["next"] is None
    assert "ey" not in str(everything)  # no JWT anywhere in the log


# --- signing keys, JWKS and discovery ---------------------------------------------------------


def test_jwks_and_discovery_name_the_tenants_issuer_and_keys(acme):
    keys = acme.client.get("/t/acme/jwks.json")
    assert keys.status_code == 200
    (key,) = keys.get_json()["keys"]
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert "d" not in key and "p" not in key
    for path in ("oauth-authorization-server", "openid-configuration"):
        document = acme.client.get(f"/t/acme/.well-known/{path}").get_json()
        assert document["issuer"] == f"{acme.url}/t/acme"
        assert document["jwks_uri"] == f"{acme.url}/t/acme/jwks.json"
        assert document["token_endpoint"] == f"{acme.url}/t/acme/oauth/token"
        assert GRANT in document["grant_types_supported"]
    assert acme.client.get("/t/nowhere/jwks.json").status_code == 404
    assert acme.client.get("/t/nowhere/.well-known/openid-configuration").status_code == 404


def test_keys_are_sealed_per_tenant_and_rotation_publishes_before_signing(acme, idp):
    rt = runtime.of(acme.app)
    first_kid = acme.client.get("/t/acme/jwks.json").get_json()["keys"][0]["kid"]
    with rt.db.read() as session:
        tenants.find(session, "acme")
        (row,) = signing.published(session)
        assert "PRIVATE" not in row.private_sealed and row.private_sealed.startswith("v1.")
    with rt.db.transaction() as session:
        signing.rotate(session, rt.keyring, tenants.find(session, "acme"))
    kids = [key["kid"] for key in acme.client.get("/t/acme/jwks.json").get_json()["keys"]]
    assert len(kids) == 2 and first_kid in kids  # the next key is published ...
    response = acme.client.post(
        "/t/acme/oauth/token", data=exchange_form(idp.access_token("00u1")), headers=basic()
    )
    token = remember_secret(response.get_json()["access_token"])
    assert jwt.get_unverified_header(token)["kid"] == first_kid  # ... before it signs


# --- private_key_jwt (RFC 7523) ---------------------------------------------------------------


@pytest.fixture
def keyed(acme) -> Any:
    """A client ``keyed`` that authenticates with private_key_jwt, granted Snowflake."""
    from tests.idp import new_key

    key = new_key("ES256")
    rt = runtime.of(acme.app)
    with rt.db.transaction() as session:
        tenant = tenants.find(session, "acme")
        client, generated = clients.create(
            session,
            rt.keyring,
            tenant,
            ClientSchema().load(
                {
                    "client_id": "keyed",
                    "audiences": ["snowflake-prod"],
                    "scopes": ["analyst"],
                    "jwks": {"keys": [key.public_jwk()]},
                }
            ),
        )
        assert generated is None
        integrations.grant(session, client, integrations.find(session, "snowflake-prod"))
    return key


def assertion(key: Any, audience: str, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": "keyed",
        "sub": "keyed",
        "aud": audience,
        "iat": now,
        "exp": now + 120,
        "jti": f"jti-{time.monotonic_ns()}",
    } | overrides
    signing_key = overrides.pop("_key", key)
    return remember_secret(
        jwt.encode(
            {k: v for k, v in claims.items() if k != "_key"},
            signing_key.private,
            algorithm=signing_key.algorithm,
            headers={"kid": signing_key.kid},
        )
    )


def with_assertion(form: dict[str, Any], signed: str) -> dict[str, Any]:
    return form | {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed,
    }


def test_private_key_jwt_authenticates_once_per_assertion(acme, idp, keyed, admin_headers):
    endpoint = f"{acme.url}/t/acme/oauth/token"
    signed = assertion(keyed, endpoint)
    form = with_assertion(exchange_form(idp.access_token("00u1")), signed)
    first = acme.client.post("/t/acme/oauth/token", data=form)
    assert first.status_code == 200, first.get_json()
    replay = acme.client.post("/t/acme/oauth/token", data=form)
    assert replay.status_code == 401
    assert replay.get_json()["error"] == "invalid_client"
    assert "used before" in replay.get_json()["error_description"]
    issuer_aud = with_assertion(
        exchange_form(idp.access_token("00u1")), assertion(keyed, f"{acme.url}/t/acme")
    )
    assert acme.client.post("/t/acme/oauth/token", data=issuer_aud).status_code == 200
    events = audit_events(acme.client, admin_headers, client="keyed")
    assert [e["outcome"] for e in events] == ["success", "failure", "success"]


def test_private_key_jwt_refuses_bad_assertions(acme, idp, keyed):
    from tests.idp import new_key

    endpoint = f"{acme.url}/t/acme/oauth/token"
    stranger = new_key("ES256")
    stranger.kid = keyed.kid
    bad = {
        "other-audience": assertion(keyed, "https://elsewhere.example/token"),
        "expired": assertion(keyed, endpoint, exp=int(time.time()) - 600),
        "too-long": assertion(keyed, endpoint, exp=int(time.time()) + 86400),
        "no-jti": assertion(keyed, endpoint, jti=None),
        "other-sub": assertion(keyed, endpoint, sub="broker"),
        "other-key": assertion(keyed, endpoint, _key=stranger),
        "hs256": remember_secret(
            jwt.encode({"iss": "keyed", "sub": "keyed", "aud": endpoint}, "k" * 32, "HS256")
        ),
    }
    for name, signed in bad.items():
        form = with_assertion(exchange_form(idp.access_token("00u1")), signed)
        response = acme.client.post("/t/acme/oauth/token", data=form)
        assert response.status_code == 401, name
        assert response.get_json()["error"] == "invalid_client", name
    both = with_assertion(exchange_form(idp.access_token("00u1")), assertion(keyed, endpoint))
    mixed = acme.client.post("/t/acme/oauth/token", data=both, headers=basic())
    assert mixed.status_code == 400


# --- RFC 7662 introspection and RFC 7009 revocation -----------------------------------------


def test_introspection_and_revocation_of_issued_tokens(acme, idp):
    form = exchange_form(idp.access_token("00u1"), audience="lake", scope="read")
    issued = acme.client.post("/t/acme/oauth/token", data=form, headers=basic())
    token = remember_secret(issued.get_json()["access_token"])

    active = acme.client.post("/t/acme/oauth/introspect", data={"token": token}, headers=basic())
    assert active.status_code == 200
    assert active.headers["Cache-Control"] == "no-store"
    body = active.get_json()
    assert body["active"] is True
    assert (body["sub"], body["client_id"], body["scope"]) == ("user:00u1", "broker", "read")

    for token_value, headers in (
        (token, basic("other", OTHER_SECRET)),  # not the client it was issued to
        ("not-a-token", basic()),
        (idp.access_token("00u1"), basic()),  # the IdP's, not idbridge's
    ):
        answer = acme.client.post(
            "/t/acme/oauth/introspect", data={"token": token_value}, headers=headers
        )
        assert answer.get_json() == {"active": False}
    assert acme.client.post("/t/acme/oauth/introspect", data={"token": token}).status_code == 401

    # another client's revocation changes nothing; the owner's does
    other = acme.client.post(
        "/t/acme/oauth/revoke", data={"token": token}, headers=basic("other", OTHER_SECRET)
    )
    assert other.status_code == 200
    assert acme.client.post(
        "/t/acme/oauth/introspect", data={"token": token}, headers=basic()
    ).get_json()["active"]
    revoked = acme.client.post("/t/acme/oauth/revoke", data={"token": token}, headers=basic())
    assert revoked.status_code == 200
    assert revoked.headers["Cache-Control"] == "no-store"
    assert acme.client.post(
        "/t/acme/oauth/introspect", data={"token": token}, headers=basic()
    ).get_json() == {"active": False}
    assert (
        acme.client.post("/t/acme/oauth/revoke", data={"token": token}, headers=basic()).status_code
        == 200
    )
    fresh = acme.client.post("/t/acme/oauth/token", data=form, headers=basic())
    assert fresh.get_json()["access_token"] != token  # the revoked token left the cache
    missing = acme.client.post("/t/acme/oauth/revoke", data={}, headers=basic())
    assert (missing.status_code, missing.get_json()["error"]) == (400, "invalid_request")


# --- delegation (RFC 8693 §1.1, §4.1, §4.4) -------------------------------------------------


def allow_delegation(flask_app: Flask) -> None:
    with runtime.of(flask_app).db.transaction() as session:
        tenants.find(session, "acme")
        clients.find(session, "broker").may_delegate = True


def test_a_client_without_the_right_cannot_delegate_and_it_is_audited(acme, idp, admin_headers):
    form = exchange_form(
        idp.access_token("00u1"),
        actor_token=idp.access_token("svc", client_id="broker"),
        actor_token_type=ACCESS,
    )
    response = acme.client.post("/t/acme/oauth/token", data=form, headers=basic())
    assert (response.status_code, response.get_json()["error"]) == (400, "invalid_request")
    event = audit_events(acme.client, admin_headers)[0]
    assert event["outcome"] == "failure"
    assert "delegation is not allowed" in event["reason"]


def test_the_issued_act_is_the_real_actor_with_earlier_actors_kept(acme, idp, admin_headers):
    allow_delegation(acme.app)
    subject = idp.access_token("00u1", may_act={"sub": "broker"}, act={"sub": "earlier-svc"})
    form = exchange_form(
        subject,
        audience="lake",
        scope="read",
        actor_token=idp.access_token("svc-account", client_id="broker"),
        actor_token_type=ACCESS,
    )
    response = acme.client.post("/t/acme/oauth/token", data=form, headers=basic())
    assert response.status_code == 200, response.get_json()
    claims = jwt.decode(
        remember_secret(response.get_json()["access_token"]), options={"verify_signature": False}
    )
    assert claims["act"] == {"sub": "broker", "act": {"sub": "earlier-svc"}}
    assert audit_events(acme.client, admin_headers)[0]["actors"] == ["earlier-svc", "broker"]


@pytest.mark.parametrize(
    "case", ["actor-is-another-client", "may-act-excludes", "actor-token-untrusted"]
)
def test_an_actor_that_is_not_the_client_is_refused(acme, idp, case):
    allow_delegation(acme.app)
    subject = idp.access_token("00u1")
    actor = idp.access_token("svc", client_id="broker")
    if case == "actor-is-another-client":
        actor = idp.access_token("svc", client_id="other")
    elif case == "may-act-excludes":
        subject = idp.access_token("00u1", may_act={"sub": "someone-else"})
    else:
        actor = _other_issuer_token()
    form = exchange_form(subject, actor_token=actor, actor_token_type=ACCESS)
    response = acme.client.post("/t/acme/oauth/token", data=form, headers=basic())
    assert (response.status_code, response.get_json()["error"]) == (400, "invalid_request")


def test_a_subject_with_a_nul_character_is_refused_not_a_server_error(acme, idp):
    response = acme.client.post(
        "/t/acme/oauth/token", data=exchange_form(idp.access_token("00u\x001")), headers=basic()
    )
    assert (response.status_code, response.get_json()["error"]) == (400, "invalid_request")
