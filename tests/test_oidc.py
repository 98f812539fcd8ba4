"""The OIDC side over HTTP (CONTRACT §2): userinfo, API and RP-initiated logout, back-channel
logout, and login counting, against a real identity provider and both stores.

THREATS.md "Userinfo and logout", end to end; ``test_tokens.py`` covers each token rule and
the JWKS faults at the domain level.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from sqlalchemy import select

from app import create_app, runtime, tenants
from app import tokens as app_tokens
from app.models import User, UserSession
from app.schemas import TenantSchema
from app.users import canonical_email
from tests.conftest import make_settings, remember_secret
from tests.idp import AUDIENCE, IdentityProviderServer
from tests.test_logout_closed import clock_at

BYE = "https://app.acme.example/bye"


@pytest.fixture
def idp() -> Iterator[IdentityProviderServer]:
    with IdentityProviderServer() as server:
        yield server


def make_tenant(app: Flask, slug: str, idp: IdentityProviderServer | None, **extra: Any) -> None:
    data: dict[str, Any] = {"slug": slug, "oidc": {"logout_redirect_uris": [BYE]}} | extra
    if idp is not None:
        data["idp"] = idp.settings()
    rt = runtime.of(app)
    with rt.db.transaction() as session:
        tenants.create(session, rt.keyring, TenantSchema().load(data))


def make_user(app: Flask, slug: str, subject: str, **values: Any) -> None:
    email = values.pop("email", f"{subject}@example.com")
    defaults = {
        "scim_id": f"scim-{subject}",
        "subject": subject,
        "user_name": f"{subject}@example.com",
        "user_name_canonical": f"{subject}@example.com",
        "customer": f"C-{subject}",
        "email": email,
        "email_canonical": canonical_email(email),
        "email_verified": True,
    }
    with runtime.of(app).db.transaction() as session:
        tenants.find(session, slug)
        session.add(User(**(defaults | values)))


def stored_user(app: Flask, slug: str, subject: str) -> User:
    with runtime.of(app).db.read() as session:
        tenants.find(session, slug)
        return session.scalars(select(User).where(User.subject == subject)).one()


@pytest.fixture
def acme(app, idp) -> IdentityProviderServer:
    make_tenant(app, "acme", idp, users={"customer_claim": "customer_number"})
    make_user(
        app,
        "acme",
        "00u1",
        email="Ada@Example.com",
        scim={
            "name": {"givenName": "Ada", "familyName": "Lovelace", "formatted": "Ada Lovelace"},
            "locale": "en-GB",
            "timezone": "Europe/London",
        },
    )
    return idp


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def userinfo(client, token: str, path: str = "/t/acme/oidc/userinfo"):
    return client.get(path, headers=bearer(token))


def assert_invalid_token(response, reason: str = "") -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="idbridge", error="invalid_token"')
    assert "error_description=" in challenge
    body = response.get_json()
    assert body["error"] == "invalid_token"
    assert reason in body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"


# --- userinfo -------------------------------------------------------------------------------


def test_userinfo_answers_the_users_claims(client, acme):
    token = acme.access_token("00u1", sid="s-1")
    response = userinfo(client, token)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    claims = response.get_json()
    updated_at = claims.pop("updated_at")
    assert isinstance(updated_at, int)
    assert claims == {
        "sub": "00u1",
        "tenant": "acme",
        "email": "Ada@Example.com",
        "email_verified": True,
        "customer_number": "C-00u1",
        "name": "Ada Lovelace",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "preferred_username": "00u1@example.com",
        "locale": "en-GB",
        "zoneinfo": "Europe/London",
    }


def test_userinfo_by_post_with_the_header_or_the_form_body(client, acme):
    token = acme.access_token("00u1")
    assert client.post("/t/acme/oidc/userinfo", headers=bearer(token)).status_code == 200
    form = client.post("/t/acme/oidc/userinfo", data={"access_token": token})
    assert form.status_code == 200 and form.get_json()["sub"] == "00u1"
    both = client.post("/t/acme/oidc/userinfo", headers=bearer(token), data={"access_token": token})
    assert both.status_code == 400 and both.get_json()["error"] == "invalid_request"


def test_no_token_is_a_bare_bearer_challenge(client, acme):
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        response = client.get("/t/acme/oidc/userinfo", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="idbridge"'
        assert response.get_json()["error"] == "unauthorized"


class RawRecords(logging.Handler):
    """Every log record as emitted, before any formatter redacts it."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(record.getMessage() + repr(vars(record)))


def test_a_token_in_the_query_string_is_refused_and_not_logged(client, acme):
    token = acme.access_token("00u1")
    records = RawRecords()
    root = logging.getLogger()
    root.addHandler(records)
    loggers = [logging.getLogger(name) for name in ("idbridge", "idbridge.access")]
    for logger in loggers:
        logger.addHandler(records)
    try:
        for response in (
            client.get(f"/t/acme/oidc/userinfo?access_token={token}"),
            client.get(f"/t/acme/oidc/userinfo?access_token={token}", headers=bearer(token)),
            client.post(f"/t/acme/oidc/userinfo?access_token={token}"),
            client.post(f"/t/acme/oidc/logout?access_token={token}"),
        ):
            assert response.status_code == 400
            assert response.get_json()["error"] == "invalid_request"
            assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]
            assert token not in response.get_data(as_text=True)
    finally:
        root.removeHandler(records)
        for logger in loggers:
            logger.removeHandler(records)
    assert records.text, "the requests were logged"
    signature = token.rsplit(".", 1)[1]
    assert not any(signature in line for line in records.text)


def _hs256_with_public_key(idp: IdentityProviderServer) -> str:
    import base64
    import hashlib
    import hmac
    import json

    from cryptography.hazmat.primitives import serialization

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    pem = (
        idp.keys["RS256"]
        .private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": idp.keys["RS256"].kid}
    signing_input = (
        b64(json.dumps(header).encode())
        + "."
        + b64(json.dumps(idp.claims("00u1", aud=AUDIENCE)).encode())
    )
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return remember_secret(signing_input + "." + b64(signature))


def _alg_none(idp: IdentityProviderServer) -> str:
    import base64
    import json

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return b64({"alg": "none"}) + "." + b64(idp.claims("00u1", aud=AUDIENCE)) + "."


REFUSED = {
    "alg none": _alg_none,
    "HS256 with the public key": _hs256_with_public_key,
    "unknown crit": lambda idp: idp.access_token(headers={"crit": ["x-ext"], "x-ext": 1}),
    "ID token": lambda idp: idp.id_token("00u1"),
    "ID token for the API audience": lambda idp: idp.id_token("00u1", audience=AUDIENCE),
    "refresh token": lambda idp: idp.refresh_token("00u1"),
    "wrong aud": lambda idp: idp.access_token(audience="api://elsewhere"),
    "missing aud": lambda idp: idp.access_token(audience=None),
    "iss prefix": lambda idp: idp.access_token(iss=idp.issuer[:-1]),
    "iss suffix": lambda idp: idp.access_token(iss=idp.issuer + "2"),
    "iss trailing slash": lambda idp: idp.access_token(iss=idp.issuer + "/"),
    "exp past the leeway": lambda idp: idp.access_token(exp=int(time.time()) - 90),
    "nbf in the future": lambda idp: idp.access_token(nbf=int(time.time()) + 90),
    "not a JWT": lambda idp: remember_secret("opaque-token-" + "x" * 30),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_userinfo_refuses(client, acme, case):
    assert_invalid_token(userinfo(client, REFUSED[case](acme)))


def test_inside_the_leeway_is_accepted(client, acme):
    now = int(time.time())
    assert userinfo(client, acme.access_token(exp=now - 20)).status_code == 200
    assert userinfo(client, acme.access_token(nbf=now + 20)).status_code == 200


def test_another_tenants_idp_token_is_refused(app, client, acme):
    with IdentityProviderServer() as other_idp:
        make_tenant(app, "globex", other_idp)
        make_user(app, "globex", "00u1", customer="G-1", email="ada@globex.example")
        globex_token = other_idp.access_token("00u1")
        assert userinfo(client, globex_token, "/t/globex/oidc/userinfo").status_code == 200
        assert_invalid_token(userinfo(client, globex_token))
        acme_token = acme.access_token("00u1")
        assert_invalid_token(userinfo(client, acme_token, "/t/globex/oidc/userinfo"))


def test_identity_is_the_subject_never_the_email_claim(client, acme):
    token = acme.access_token("00u-unknown", email="Ada@Example.com")
    assert_invalid_token(userinfo(client, token), "unknown")


def test_unknown_or_blocked_users_are_refused(app, client, acme):
    make_user(app, "acme", "00u2", active=False)
    make_user(app, "acme", "00u3", operator_blocked=True)
    for subject in ("00u2", "00u3"):
        assert_invalid_token(userinfo(client, acme.access_token(subject)), "blocked")


def test_a_tenant_without_an_identity_provider_trusts_no_token(app, client, idp):
    make_tenant(app, "bare", None)
    assert_invalid_token(
        userinfo(client, idp.access_token("00u1"), "/t/bare/oidc/userinfo"), "no identity"
    )


def test_an_unknown_tenant_is_not_found(client, idp):
    response = userinfo(client, idp.access_token("00u1"), "/t/nobody/oidc/userinfo")
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"


def test_jwks_down_with_no_keys_answers_503_not_a_success(client, acme):
    acme.mode = "down"
    response = userinfo(client, acme.access_token("00u1"))
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.get_json()["error"] == "temporarily_unavailable"


# --- API logout ---------------------------------------------------------------------------


def test_api_logout_ends_that_session_on_every_instance(app, client, acme, settings, tmp_path):
    other_instance = create_app(make_settings(tmp_path / "b", database_url=settings.database_url))
    other = other_instance.test_client()
    assert app_tokens.of(app) is not app_tokens.of(other_instance)  # each its own key cache
    try:
        first = acme.access_token("00u1", sid="s-1")
        also_first = acme.access_token("00u1", sid="s-1")
        second = acme.access_token("00u1", sid="s-2")
        for token in (first, second):
            assert userinfo(other, token).status_code == 200
        response = client.post("/t/acme/oidc/logout", headers=bearer(first))
        assert response.status_code == 204
        for instance in (client, other):
            assert_invalid_token(userinfo(instance, first), "session")
            assert_invalid_token(userinfo(instance, also_first), "session")
            assert userinfo(instance, second).status_code == 200  # another session lives on
        assert_invalid_token(client.post("/t/acme/oidc/logout", headers=bearer(first)))
    finally:
        runtime.of(other_instance).db.dispose()


def test_api_logout_without_sid_ends_every_session_of_the_user(client, acme, monkeypatch):
    two_minutes_ago = int(time.time()) - 120
    tokens = [
        acme.access_token("00u1", sid=sid, iat=two_minutes_ago - 1) for sid in ("s-1", "s-2", None)
    ]
    with clock_at(monkeypatch, datetime.fromtimestamp(two_minutes_ago, UTC)):
        assert client.post("/t/acme/oidc/logout", headers=bearer(tokens[2])).status_code == 204
    for token in tokens:
        assert_invalid_token(userinfo(client, token), "session")
    # a later login (a token issued more than the leeway after the logout) works again
    assert userinfo(client, acme.access_token("00u1", sid="s-3")).status_code == 200


def test_api_logout_needs_a_valid_token(client, acme):
    response = client.post("/t/acme/oidc/logout")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_invalid_token(client.post("/t/acme/oidc/logout", headers=bearer(acme.id_token())))


# --- RP-initiated logout -----------------------------------------------------------------


def test_rp_logout_redirects_to_a_registered_uri_with_state(client, acme):
    token = acme.access_token("00u1", sid="s-1")
    hint = acme.id_token("00u1", sid="s-1", exp=int(time.time()) - 3600)  # expired is fine
    response = client.get(
        "/t/acme/oidc/logout",
        query_string={"id_token_hint": hint, "post_logout_redirect_uri": BYE, "state": "x y&z"},
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == BYE
    assert parse_qs(location.query) == {"state": ["x y&z"]}
    assert_invalid_token(userinfo(client, token), "session")


def test_rp_logout_without_a_redirect_shows_a_signed_out_page(client, acme):
    token = acme.access_token("00u1", sid="s-1")
    response = client.get(
        "/t/acme/oidc/logout", query_string={"id_token_hint": acme.id_token("00u1", sid="s-1")}
    )
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '<html lang="en">' in page and "<h1>You are signed out</h1>" in page
    assert "<script" not in page
    assert_invalid_token(userinfo(client, token), "session")


@pytest.mark.parametrize(
    "uri", [BYE + "/", BYE + "?x=1", "https://evil.example/bye", BYE.upper(), "//evil.example"]
)
def test_rp_logout_to_an_unregistered_uri_is_a_400_page_and_ends_nothing(client, acme, uri):
    token = acme.access_token("00u1", sid="s-1")
    response = client.get(
        "/t/acme/oidc/logout",
        query_string={
            "id_token_hint": acme.id_token("00u1", sid="s-1"),
            "post_logout_redirect_uri": uri,
        },
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    assert userinfo(client, token).status_code == 200


def test_rp_logout_needs_a_valid_hint_of_the_tenants_issuer(client, acme):
    with IdentityProviderServer() as stranger:
        hints = [None, "garbage", stranger.id_token("00u1"), acme.id_token(iss=acme.issuer + "/")]
    for hint in hints:
        query = {"id_token_hint": hint} if hint else {}
        response = client.get("/t/acme/oidc/logout", query_string=query)
        assert response.status_code == 400, hint
        assert "<h1>Sign-out failed</h1>" in response.get_data(as_text=True)


# --- back-channel logout -----------------------------------------------------------------


def backchannel(client, logout_token: str | None, slug: str = "acme"):
    data = {} if logout_token is None else {"logout_token": logout_token}
    return client.post(f"/t/{slug}/oidc/backchannel-logout", data=data)


def test_backchannel_logout_ends_the_session_and_refuses_a_replay(client, acme):
    token = acme.access_token("00u1", sid="s-1")
    other_session = acme.access_token("00u1", sid="s-2")
    logout_token = acme.logout_token("00u1", sid="s-1")
    response = backchannel(client, logout_token)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    assert_invalid_token(userinfo(client, token), "session")
    assert userinfo(client, other_session).status_code == 200
    replay = backchannel(client, logout_token)
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_request"
    assert replay.headers["Cache-Control"] == "no-store"


def test_backchannel_logout_by_sid_only(client, acme):
    seen = acme.access_token("00u1", sid="s-seen")
    assert userinfo(client, seen).status_code == 200  # idbridge saw this session
    unseen = acme.access_token("00u1", sid="s-unseen")
    for sid in ("s-seen", "s-unseen"):
        assert backchannel(client, acme.logout_token(None, sid=sid)).status_code == 200
    assert_invalid_token(userinfo(client, seen), "session")
    assert_invalid_token(userinfo(client, unseen), "session")


def test_backchannel_logout_by_subject_ends_every_session(client, acme):
    tokens = [acme.access_token("00u1", sid=sid) for sid in ("s-1", "s-2")]
    assert backchannel(client, acme.logout_token("00u1", audience=AUDIENCE)).status_code == 200
    for token in tokens:
        assert_invalid_token(userinfo(client, token), "session")


def test_backchannel_logout_refuses_what_2_6_refuses(client, acme):
    bad = [
        None,
        "",
        "garbage",
        acme.logout_token("00u1", nonce="n-1"),
        acme.logout_token("00u1", events={"urn:other": {}}),
        acme.logout_token(None),
        acme.logout_token("00u1", audience="someone-else"),
        acme.logout_token("00u1", iss=acme.issuer + "/"),
        acme.access_token("00u1"),
        acme.id_token("00u1"),
    ]
    token = acme.access_token("00u1", sid="s-1")
    for logout_token in bad:
        response = backchannel(client, logout_token)
        assert response.status_code == 400
        assert response.get_json()["error"] == "invalid_request"
        assert response.headers["Cache-Control"] == "no-store"
    assert userinfo(client, token).status_code == 200


def test_backchannel_logout_of_another_tenant_is_refused(app, client, acme):
    with IdentityProviderServer() as other_idp:
        make_tenant(app, "globex", other_idp)
        token = acme.access_token("00u1", sid="s-1")
        response = backchannel(client, acme.logout_token("00u1", sid="s-1"), "globex")
        assert response.status_code == 400
        assert userinfo(client, token).status_code == 200


# --- logins -------------------------------------------------------------------------------


def test_a_login_is_counted_once_per_session(app, client, acme):
    auth_time = int(time.time()) - 100
    assert userinfo(client, acme.access_token("00u1", sid="s-1", auth_time=auth_time))
    assert userinfo(client, acme.access_token("00u1", sid="s-1", auth_time=auth_time))
    user = stored_user(app, "acme", "00u1")
    assert user.logins_count == 1
    assert int(user.login_time.timestamp()) == auth_time
    later = auth_time + 50
    assert userinfo(client, acme.access_token("00u1", auth_time=later)).status_code == 200
    assert userinfo(client, acme.access_token("00u1", auth_time=later)).status_code == 200
    user = stored_user(app, "acme", "00u1")
    assert user.logins_count == 2 and int(user.login_time.timestamp()) == later
    # no sid and no auth_time: no session to tell, nothing counted
    assert userinfo(client, acme.access_token("00u1")).status_code == 200
    assert stored_user(app, "acme", "00u1").logins_count == 2


def test_refused_tokens_count_no_login(app, client, acme):
    assert_invalid_token(userinfo(client, acme.access_token("00u1", sid="s-1", audience="x")))
    assert stored_user(app, "acme", "00u1").logins_count == 0


def test_concurrent_first_uses_of_one_session_count_once(app, acme):
    token = acme.access_token("00u1", sid="s-race", auth_time=int(time.time()))
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def use() -> None:
        barrier.wait(timeout=10)
        statuses.append(userinfo(app.test_client(), token).status_code)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] * 6
    assert stored_user(app, "acme", "00u1").logins_count == 1
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        assert len(session.scalars(select(UserSession)).all()) == 1
