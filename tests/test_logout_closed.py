"""A logout ends what it names, failing closed (issue 13, point 3; THREATS.md "Every path").

Each hole is tried through every logout door (``DOORS``: API logout, RP-initiated logout,
back-channel logout by ``sub`` + ``sid`` and by ``sid`` only, and those that name no session),
checked at userinfo and at token exchange, on SQLite and PostgreSQL, with the database store
and with Redis shared state, against a real identity provider (real keys, a real JWKS endpoint):

1. a token that names no session (what a certified OpenID provider issues by default) is ended
   by a logout of any session of its user that it predates;
2. an ended session stays ended: a token naming it, issued after the logout (the IdP, not told,
   refreshed the session), is refused for ``IDBRIDGE_SESSION_MAX_AGE``;
3. an IdP clock ahead of idbridge's (inside the leeway) never keeps a token alive.

A logout "in the past" runs with idbridge's clock set back (``clock_at``): token validation
keeps the real clock, as the IdP's tokens do.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import event, select

from app import create_app, jobs, oidc, revocation, runtime, shared, tenants
from app.models import SessionRevocation, utcnow
from app.settings import Settings
from app.shared_redis import connect
from app.tokens import LEEWAY
from tests.conftest import empty_tables
from tests.idp import IdentityProviderServer
from tests.redis_support import OwnRedis
from tests.test_exchange import basic, exchange_form, seed_tenant

HOUR = 3600
AHEAD = 50  # seconds the IdP's clock is ahead of idbridge's: inside the leeway (60 s)
USERINFO = "/t/acme/oidc/userinfo"


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProviderServer]:
    with IdentityProviderServer() as server:
        yield server


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = OwnRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(params=["database", "redis"])
def bridge(request, settings: Settings, idp: IdentityProviderServer) -> Iterator[Flask]:
    """idbridge with tenant ``acme`` trusting ``idp``: users 00u1 and 00u2, the client
    ``broker`` granted the ``lake`` integration; its revocations in the database or in Redis."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        connect(url).flushall()
        settings = dataclasses.replace(settings, redis_url=url)
    flask_app = create_app(settings)
    empty_tables(runtime.of(flask_app).db)
    seed_tenant(flask_app, "acme", idp)
    yield flask_app
    runtime.of(flask_app).db.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- where tokens are checked -------------------------------------------------------------


def refusal(flask_app: Flask, check: str, token: str) -> str | None:
    """Why ``check`` (userinfo or token exchange) refuses ``token``; ``None`` when it accepts."""
    client = flask_app.test_client()
    if check == "userinfo":
        response = client.get(USERINFO, headers=bearer(token))
        refused_with = 401
    else:
        form = exchange_form(token, audience="lake", scope="read")
        response = client.post("/t/acme/oauth/token", data=form, headers=basic())
        refused_with = 400
    if response.status_code == 200:
        return None
    body = response.get_json()
    assert response.status_code == refused_with, body
    assert body["error"] in ("invalid_token", "invalid_request"), body
    return body["error_description"].removeprefix("subject_token refused: ")


CHECKS = ["userinfo", "exchange"]
ENDED = "the session of this token has ended"


# --- the doors: every way a logout reaches idbridge ------------------------------------------


def api_logout(flask_app: Flask, idp: IdentityProviderServer, sid: str | None, iat: int) -> None:
    """``POST /oidc/logout`` with the user's access token (issued at ``iat``)."""
    token = idp.access_token("00u1", sid=sid, iat=iat, exp=iat + HOUR)
    response = flask_app.test_client().post("/t/acme/oidc/logout", headers=bearer(token))
    assert response.status_code == 204, response.get_json()


def rp_logout(flask_app: Flask, idp: IdentityProviderServer, sid: str | None, iat: int) -> None:
    """RP-Initiated Logout with an ID token hint issued at ``iat``."""
    hint = idp.id_token("00u1", sid=sid, iat=iat, exp=iat + HOUR)
    response = flask_app.test_client().get(
        "/t/acme/oidc/logout", query_string={"id_token_hint": hint}
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def _backchannel(flask_app: Flask, logout_token: str) -> None:
    response = flask_app.test_client().post(
        "/t/acme/oidc/backchannel-logout", data={"logout_token": logout_token}
    )
    assert response.status_code == 200, response.get_json()


def backchannel_logout(
    flask_app: Flask, idp: IdentityProviderServer, sid: str | None, iat: int
) -> None:
    """Back-Channel Logout naming ``sub`` (and ``sid``), the logout token issued at ``iat``."""
    _backchannel(flask_app, idp.logout_token("00u1", sid=sid, iat=iat, exp=iat + HOUR))


def backchannel_logout_by_sid(
    flask_app: Flask, idp: IdentityProviderServer, sid: str | None, iat: int
) -> None:
    """Back-Channel Logout naming only ``sid``, of a session idbridge saw at userinfo."""
    seen = idp.access_token("00u1", sid=sid, iat=iat, exp=iat + HOUR)
    assert flask_app.test_client().get(USERINFO, headers=bearer(seen)).status_code == 200
    _backchannel(flask_app, idp.logout_token(None, sid=sid, iat=iat, exp=iat + HOUR))


Door = Callable[[Flask, IdentityProviderServer, "str | None", int], None]
# door -> the route it goes through, and whether it can name no session (every session)
DOORS: dict[Door, tuple[str, str, bool]] = {
    api_logout: ("POST", "/t/<slug:tenant>/oidc/logout", True),
    rp_logout: ("GET", "/t/<slug:tenant>/oidc/logout", True),
    backchannel_logout: ("POST", "/t/<slug:tenant>/oidc/backchannel-logout", True),
    backchannel_logout_by_sid: ("POST", "/t/<slug:tenant>/oidc/backchannel-logout", False),
}
OF_A_SESSION = [pytest.param(door, id=door.__name__) for door in DOORS]
ANY_LOGOUT = [
    pytest.param(door, sid, id=f"{door.__name__}-{'of-a-session' if sid else 'of-every-session'}")
    for door, (_, _, can_name_none) in DOORS.items()
    for sid in (["s-1", None] if can_name_none else ["s-1"])
]


def test_every_logout_route_is_a_door(app):
    """A logout route added later must join ``DOORS`` (and so every test below)."""
    routes = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if "logout" in rule.rule
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert routes == {(method, route) for method, route, _ in DOORS.values()}


@contextmanager
def clock_at(monkeypatch: pytest.MonkeyPatch, when: datetime) -> Iterator[None]:
    """idbridge's clock reads ``when`` while the block runs (a logout made back then)."""
    with monkeypatch.context() as patch:
        for module in (revocation, oidc):
            patch.setattr(module, "utcnow", lambda: when)
        yield


# --- 1. a token that names no session ------------------------------------------------------


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("door", OF_A_SESSION)
def test_a_token_without_sid_is_ended_by_a_logout_of_a_session_of_its_user(
    bridge, idp, door, check
):
    without_sid = idp.access_token("00u1")  # issued before the logout
    someone_else = idp.access_token("00u2")
    assert refusal(bridge, check, without_sid) is None
    door(bridge, idp, "s-1", int(time.time()))
    assert refusal(bridge, check, without_sid) == ENDED
    assert refusal(bridge, check, someone_else) is None


# --- 2. an ended session stays ended --------------------------------------------------------


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("door", OF_A_SESSION)
def test_an_ended_session_stays_ended_whatever_the_iat_of_its_tokens(
    bridge, idp, door, check, monkeypatch
):
    ten_minutes_ago = int(time.time()) - 600
    with clock_at(monkeypatch, datetime.fromtimestamp(ten_minutes_ago, UTC)):
        door(bridge, idp, "s-1", ten_minutes_ago)
    refreshed = idp.access_token("00u1", sid="s-1")  # the IdP, not told, refreshed it now
    assert refusal(bridge, check, refreshed) == ENDED
    # what came after the logout lives: a new session, a token without sid well after it
    assert refusal(bridge, check, idp.access_token("00u1", sid="s-2")) is None
    assert refusal(bridge, check, idp.access_token("00u1")) is None


def test_an_ended_sessions_rows_outlive_it_then_are_swept(bridge, idp):
    rt = runtime.of(bridge)
    age = timedelta(seconds=rt.settings.session_max_age)
    api_logout(bridge, idp, "s-1", int(time.time()))
    with rt.db.read() as session:
        tenants.find(session, "acme")
        rows = {
            row.session_id: row.not_before for row in session.scalars(select(SessionRevocation))
        }
    ended = rows[revocation.NO_SESSION]
    assert rows == {"s-1": ended + age, revocation.NO_SESSION: ended}

    def swept_at(when: datetime) -> set[str]:
        jobs.cleanup(rt, now=when)
        with rt.db.read() as session:
            tenants.find(session, "acme")
            return set(rows) - set(session.scalars(select(SessionRevocation.session_id)))

    grace = revocation.kept_for(age)  # no valid token can meet a row older than this
    assert grace >= age + timedelta(seconds=2 * LEEWAY)
    assert swept_at(ended + age) == set()  # as long as the session can live: kept
    assert swept_at(ended + grace + timedelta(seconds=1)) == {revocation.NO_SESSION}
    assert swept_at(ended + age + grace + timedelta(seconds=1)) == {"s-1", revocation.NO_SESSION}
    if rt.settings.redis_url:  # the Redis copy expires with the rows it copies
        store = shared.of(bridge).not_before
        with rt.db.read() as session:
            tenant_id = tenants.find(session, "acme").id
        for session_id, cutoff in rows.items():
            key = store._key(tenant_id, "00u1", session_id)  # type: ignore[attr-defined]
            expected = (cutoff + grace).timestamp() * 1000
            assert abs(store.redis.pexpiretime(key) - expected) <= 1  # type: ignore[attr-defined]


# --- 3. clock skew --------------------------------------------------------------------------


@pytest.mark.parametrize("ahead", ["the-token-that-asks", "another-token"])
@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize(("door", "sid"), ANY_LOGOUT)
def test_a_clock_ahead_never_keeps_a_token_alive(bridge, idp, door, sid, check, ahead):
    """The IdP's clock is ``AHEAD`` seconds ahead: it issued a token "now" by its clock, then
    the logout (asked with that very token, or with an older one) reached idbridge."""
    now = int(time.time())
    skewed = idp.access_token("00u1", iat=now + AHEAD)
    assert refusal(bridge, check, skewed) is None  # inside the leeway: valid
    door(bridge, idp, sid, now + AHEAD if ahead == "the-token-that-asks" else now - 300)
    assert refusal(bridge, check, skewed) == ENDED


# --- what a new login right after a logout costs ------------------------------------------


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize(("door", "sid"), ANY_LOGOUT)
def test_a_login_after_a_logout_is_refused_only_inside_the_leeway(
    bridge, idp, door, sid, check, monkeypatch
):
    """The price of failing closed on skew (README, "Logout"): a token issued up to the leeway
    after a logout that covers it is refused; a new session is not covered by a logout of
    another session, and anything issued after the leeway is accepted."""
    now = int(time.time())
    with clock_at(monkeypatch, datetime.fromtimestamp(now - 2 * LEEWAY, UTC)):
        door(bridge, idp, sid, now - 2 * LEEWAY)
    inside = idp.access_token("00u1", iat=now - 2 * LEEWAY + LEEWAY // 2)
    assert refusal(bridge, check, inside) == ENDED
    assert refusal(bridge, check, idp.access_token("00u1")) is None
    assert refusal(bridge, check, idp.access_token("00u1", sid="s-2")) is None


# --- the session's longest life bounds what is accepted ---------------------------------------


@pytest.mark.parametrize("check", CHECKS)
def test_a_token_valid_longer_than_a_session_can_live_is_refused(bridge, idp, check):
    age = runtime.of(bridge).settings.session_max_age
    assert refusal(bridge, check, idp.access_token("00u1", lifetime=age)) is None
    too_long = refusal(bridge, check, idp.access_token("00u1", lifetime=age + 1))
    assert too_long is not None and "longer than this deployment accepts" in too_long


def test_the_session_max_age_is_a_setting(tmp_path: Path, settings: Settings, idp):
    short = create_app(dataclasses.replace(settings, session_max_age=3600))
    try:
        empty_tables(runtime.of(short).db)
        seed_tenant(short, "acme", idp)
        assert refusal(short, "userinfo", idp.access_token("00u1", lifetime=3600)) is None
        assert refusal(short, "userinfo", idp.access_token("00u1", lifetime=3601)) is not None
        with runtime.of(short).db.transaction() as session:
            tenants.find(session, "acme")
            at = revocation.revoke(session, "00u1", "logout", session_id="s-1")
            row = session.scalars(
                select(SessionRevocation).where(SessionRevocation.session_id == "s-1")
            ).one()
            assert row.not_before == at + timedelta(seconds=3600)
    finally:
        runtime.of(short).db.dispose()


# --- the hot path stays one read ----------------------------------------------------------


@pytest.mark.parametrize("sid", ["s-1", None])
def test_a_token_check_is_one_read_of_the_store(bridge, sid):
    """``is_revoked`` runs on every userinfo and exchange: one query, or one Redis call."""
    rt = runtime.of(bridge)
    with rt.db.transaction() as session:
        tenants.find(session, "acme")
        revocation.revoke(session, "00u1", "logout", session_id="s-1")
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    redis_client = shared.of(bridge).redis

    def evals() -> int:
        stats = redis_client.info("commandstats") if redis_client else {}
        return sum(v["calls"] for k, v in stats.items() if k.startswith("cmdstat_eval"))

    with rt.db.read() as session:
        tenants.find(session, "acme")
        revocation.is_revoked(session, "00u9", "warm-up", utcnow())  # a Redis reload, if due
        before = evals()
        event.listen(rt.db.read_engine, "before_cursor_execute", count)
        try:
            assert revocation.is_revoked(session, "00u1", sid, utcnow())
        finally:
            event.remove(rt.db.read_engine, "before_cursor_execute", count)
        after = evals()
    if redis_client is None:
        assert len(statements) == 1, statements
    else:
        assert (statements, after - before) == ([], 1)
