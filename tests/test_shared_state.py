"""One contract per shared store (``app.shared``), run against the single-instance
implementation (database, in-process locks) and the Redis one; then what only Redis mode must
survive: a Redis the test started itself stopped, paused (``kill -STOP``), resumed and
restarted empty. Security checks fail closed with 503; revocations come back from the database.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from app import create_app, replay, revocation, runtime, shared, tenants
from app.errors import StoreUnavailable
from app.idempotency import DeliveryClaims
from app.models import ClientAssertionUse, SessionRevocation, utcnow
from app.schemas import TenantSchema
from app.settings import Settings
from tests import redis_support
from tests.conftest import empty_tables
from tests.idp import IdentityProviderServer
from tests.redis_support import OwnRedis
from tests.webhook_support import make_tenant as make_webhook_tenant
from tests.webhook_support import sign

own_redis = redis_support.own_redis
TOKEN = "/t/acme/oauth/token"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclasses.dataclass
class Deployment:
    """Two instances of idbridge sharing one database (and one Redis in Redis mode)."""

    first: Flask
    second: Flask
    redis: OwnRedis | None


@pytest.fixture(params=["single", "redis"])
def deployment(request, settings: Settings, tmp_path: Path) -> Iterator[Deployment]:
    server = None
    if request.param == "redis":
        server = OwnRedis(tmp_path)
        server.start()
        settings = dataclasses.replace(settings, redis_url=server.url)
    first = create_app(settings)
    second = create_app(dataclasses.replace(settings, instance_path=str(tmp_path / "b")))
    empty_tables(runtime.of(first).db)
    for slug in ("acme", "globex"):
        with runtime.of(first).db.transaction() as session:
            tenants.create(session, runtime.of(first).keyring, TenantSchema().load({"slug": slug}))
    try:
        yield Deployment(first, second, server)
    finally:
        for instance in (first, second):
            runtime.of(instance).db.dispose()
        if server is not None:
            server.stop()


def _in(instance: Flask, slug: str = "acme"):
    """A write transaction of ``instance`` scoped to tenant ``slug``: (session, tenant id)."""

    class Scoped:
        def __enter__(self):
            self.unit = runtime.of(instance).db.transaction()
            session = self.unit.__enter__()
            return session, tenants.find(session, slug).id

        def __exit__(self, *exc):
            return self.unit.__exit__(*exc)

    return Scoped()


def _use(tenant_id: int, jti: str = "jti-1", client_id: str = "broker") -> replay.Use:
    return replay.Use(
        replay.Kind.CLIENT_ASSERTION, tenant_id, jti, utcnow() + timedelta(minutes=5), client_id
    )


# --- ReplayStore ------------------------------------------------------------------------------


def test_a_jti_is_used_once_on_every_instance(deployment):
    with _in(deployment.first) as (session, tenant_id):
        assert replay.first_use(session, _use(tenant_id)) is True
    for instance in (deployment.first, deployment.second):
        with _in(instance) as (session, tenant_id):
            assert replay.first_use(session, _use(tenant_id)) is False


def test_jtis_of_other_clients_kinds_and_tenants_are_apart(deployment):
    with _in(deployment.first) as (session, tenant_id):
        assert replay.first_use(session, _use(tenant_id)) is True
        assert replay.first_use(session, _use(tenant_id, client_id="other")) is True
        logout = dataclasses.replace(_use(tenant_id), kind=replay.Kind.LOGOUT_TOKEN, client_id="")
        assert replay.first_use(session, logout) is True
    with _in(deployment.second, "globex") as (session, tenant_id):
        assert replay.first_use(session, _use(tenant_id)) is True


def test_a_use_whose_transaction_rolled_back_is_forgotten(deployment):
    with pytest.raises(RuntimeError), _in(deployment.first) as (session, tenant_id):
        assert replay.first_use(session, _use(tenant_id)) is True
        raise RuntimeError("the request failed after the check")
    with _in(deployment.second) as (session, tenant_id):
        assert replay.first_use(session, _use(tenant_id)) is True


def test_two_instances_using_one_jti_at_once_let_one_through(deployment):
    barrier = threading.Barrier(2)
    results: list[bool] = []

    def use(instance: Flask) -> None:
        barrier.wait(timeout=10)
        try:
            with _in(instance) as (session, tenant_id):
                results.append(replay.first_use(session, _use(tenant_id, "race")))
        except StoreUnavailable:
            results.append(False)  # lost the race on the database's unique index

    threads = [
        threading.Thread(target=use, args=(i,)) for i in (deployment.first, deployment.second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False, True]


# --- NotBeforeStore (through app.revocation) ------------------------------------------------


def test_a_revocation_on_one_instance_is_seen_by_the_other_at_once(deployment):
    now = utcnow()
    earlier, later = now - timedelta(seconds=5), now + revocation.SKEW + timedelta(seconds=5)
    with _in(deployment.second) as (session, _):
        assert not revocation.is_revoked(session, "00u1", "sid-1", earlier)  # read before
    with _in(deployment.first) as (session, _):
        revocation.revoke(session, "00u1", "logout", session_id="sid-1", at=now)
    with _in(deployment.second) as (session, _):
        assert revocation.is_revoked(session, "00u1", "sid-1", earlier)
        assert revocation.is_revoked(session, "00u1", "sid-1", later)  # ended for good
        assert revocation.is_revoked(session, "00u1", None, now)  # names no session
        assert not revocation.is_revoked(session, "00u1", None, later)
        assert not revocation.is_revoked(session, "00u1", "sid-2", earlier)
        assert not revocation.is_revoked(session, "00u2", "sid-1", earlier)
    with _in(deployment.second, "globex") as (session, _):
        assert not revocation.is_revoked(session, "00u1", "sid-1", earlier)


def test_a_user_wide_revocation_covers_every_session_and_never_moves_back(deployment):
    now = utcnow()
    earlier = now - timedelta(seconds=5)
    with _in(deployment.first) as (session, _):
        revocation.revoke(session, "00u1", "blocked", at=now)
    with _in(deployment.first) as (session, _):
        revocation.revoke(session, "00u1", "older", at=earlier)
    with _in(deployment.second) as (session, _):
        assert revocation.is_revoked(session, "00u1", "any-session", now)
        assert revocation.is_revoked(session, "00u1", None, now)


def test_a_revocation_whose_transaction_rolled_back_leaves_no_trace_in_the_database(deployment):
    with pytest.raises(RuntimeError), _in(deployment.first) as (session, _):
        revocation.revoke(session, "00u1", "logout")
        raise RuntimeError("failed after")
    with _in(deployment.first) as (session, _):
        assert session.scalars(select(SessionRevocation)).first() is None


# --- DeliveryClaims -------------------------------------------------------------------------


def _holders(deployment: Deployment) -> tuple[DeliveryClaims, DeliveryClaims]:
    """Two instances' claims in Redis mode; in single-instance mode, the one process's."""
    other = deployment.second if deployment.redis else deployment.first
    return shared.of(deployment.first).deliveries, shared.of(other).deliveries


def test_a_second_holder_of_one_webhook_id_waits_for_the_first(deployment):
    order: list[str] = []
    held = threading.Event()

    mine, theirs = _holders(deployment)

    def first() -> None:
        with mine.hold("acme", "msg_1"):
            held.set()
            order.append("first in")
            threading.Event().wait(0.3)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    assert held.wait(10)
    with theirs.hold("acme", "msg_1"):
        order.append("second in")
    thread.join(10)
    assert order == ["first in", "first out", "second in"]


def test_other_webhook_ids_and_tenants_do_not_wait(deployment):
    mine, theirs = _holders(deployment)
    with mine.hold("acme", "msg_1"):
        for slug, key in (("acme", "msg_2"), ("globex", "msg_1")):
            with theirs.hold(slug, key):
                pass


def test_a_holder_that_waited_too_long_gets_503(deployment):
    held, done = threading.Event(), threading.Event()
    mine, theirs = _holders(deployment)
    theirs.wait = 0.2  # type: ignore[attr-defined]

    def first() -> None:
        with mine.hold("acme", "msg_1"):
            held.set()
            done.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert held.wait(10)
    try:
        with pytest.raises(StoreUnavailable), theirs.hold("acme", "msg_1"):
            pass
    finally:
        done.set()
        thread.join(10)


# --- Redis faults: a Redis this test started ------------------------------------------------


@pytest.fixture
def redis_deployment(settings: Settings, tmp_path: Path, own_redis: OwnRedis) -> Iterator[Flask]:
    instance = create_app(dataclasses.replace(settings, redis_url=own_redis.url))
    empty_tables(runtime.of(instance).db)
    with runtime.of(instance).db.transaction() as session:
        tenants.create(session, runtime.of(instance).keyring, TenantSchema().load({"slug": "acme"}))
    yield instance
    runtime.of(instance).db.dispose()


def test_redis_restarted_empty_reloads_every_revocation_from_the_database(
    redis_deployment, own_redis
):
    now = utcnow()
    with _in(redis_deployment) as (session, _):
        revocation.revoke(session, "00u1", "logout", session_id="sid-1", at=now)
        revocation.revoke(session, "00u2", "blocked", at=now)
    own_redis.stop()
    own_redis.start()  # no data: nothing is saved to disk
    with _in(redis_deployment) as (session, _):
        assert revocation.is_revoked(session, "00u1", "sid-1", now)
        assert revocation.is_revoked(session, "00u2", None, now)
        assert not revocation.is_revoked(session, "00u3", None, now)


def test_redis_that_lost_a_replay_claim_still_refuses_the_replay(redis_deployment, own_redis):
    with _in(redis_deployment) as (session, tenant_id):
        assert replay.first_use(session, _use(tenant_id)) is True
    own_redis.stop()
    own_redis.start()
    with _in(redis_deployment) as (session, tenant_id):
        assert replay.first_use(session, _use(tenant_id)) is False  # the database remembers


def test_redis_down_fails_closed_and_writes_nothing_then_recovers(redis_deployment, own_redis):
    own_redis.stop()
    with pytest.raises(StoreUnavailable), _in(redis_deployment) as (session, _):
        revocation.is_revoked(session, "00u1", None, utcnow())
    with pytest.raises(StoreUnavailable), _in(redis_deployment) as (session, _):
        revocation.revoke(session, "00u1", "logout")
    with pytest.raises(StoreUnavailable), _in(redis_deployment) as (session, tenant_id):
        replay.first_use(session, _use(tenant_id))
    with pytest.raises(StoreUnavailable), shared.of(redis_deployment).deliveries.hold("acme", "m"):
        pass
    with _in(redis_deployment) as (session, _):
        assert session.scalars(select(SessionRevocation)).first() is None
        assert session.scalars(select(ClientAssertionUse)).first() is None
    own_redis.start()
    with _in(redis_deployment) as (session, tenant_id):
        revocation.revoke(session, "00u1", "logout")
        assert revocation.is_revoked(session, "00u1", None, utcnow() - timedelta(seconds=1))
        assert replay.first_use(session, _use(tenant_id)) is True


def test_a_paused_redis_costs_a_bounded_wait_then_503_and_recovers(redis_deployment, own_redis):
    with own_redis.paused():
        for check in (
            lambda session, _: revocation.is_revoked(session, "00u1", None, utcnow()),
            lambda session, _: revocation.revoke(session, "00u1", "logout"),
            lambda session, tenant_id: replay.first_use(session, _use(tenant_id)),
        ):
            with pytest.raises(StoreUnavailable), _in(redis_deployment) as (session, tenant_id):
                check(session, tenant_id)
    # Resumed, it answers again by itself. What it was sent while paused runs now: "00u1"
    # and jti-1 may end up refused in Redis though their transactions rolled back: the safe
    # side (a client retries with a new assertion; the user signs in again).
    with _in(redis_deployment) as (session, tenant_id):
        assert not revocation.is_revoked(session, "00u2", None, utcnow())
        assert replay.first_use(session, _use(tenant_id, "jti-2")) is True


# --- over HTTP: the caller's protocol -------------------------------------------------------


@pytest.fixture
def webhook_app(settings: Settings, own_redis: OwnRedis) -> Iterator[Flask]:
    instance = create_app(dataclasses.replace(settings, redis_url=own_redis.url))
    empty_tables(runtime.of(instance).db)
    yield instance
    runtime.of(instance).db.dispose()


def test_a_webhook_with_redis_down_is_a_503_with_retry_after_and_runs_nothing(
    webhook_app, own_redis
):
    acme = make_webhook_tenant(webhook_app)
    client = webhook_app.test_client()
    body = '{"email": "ada@example.com"}'
    own_redis.stop()
    response = client.post(
        "/t/acme/webhooks/users/send-password-reset-email",
        data=body,
        headers=sign(acme.secret, body, "msg_down"),
    )
    assert response.status_code == 503
    assert response.json["code"] == "unavailable" and int(response.headers["Retry-After"]) > 0
    own_redis.start()
    response = client.post(
        "/t/acme/webhooks/users/send-password-reset-email",
        data=body,
        headers=sign(acme.secret, body, "msg_down"),
    )
    assert response.status_code == 202  # recovered by itself: the retry runs now


def test_readyz_reports_redis_apart_from_the_database(webhook_app, own_redis):
    client = webhook_app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"]["redis"] == "ok"
    with own_redis.paused():
        paused = client.get("/readyz")
    assert paused.status_code == 503
    assert paused.json["checks"] == {"database": "ok", "migrations": "ok", "redis": "unreachable"}
    assert client.get("/readyz").status_code == 200


@pytest.fixture
def idp() -> Iterator[IdentityProviderServer]:
    with IdentityProviderServer() as server:
        yield server


@pytest.fixture
def exchange_app(webhook_app, idp, admin_headers) -> Flask:
    """A tenant whose broker may exchange tokens of user 00u1 for the Snowflake integration."""
    from tests.test_exchange import put_mapping, seed_tenant

    seed_tenant(webhook_app, "acme", idp)
    assert put_mapping(webhook_app.test_client(), admin_headers, "00u1", "ada").status_code == 201
    return webhook_app


def test_logout_while_redis_is_down_is_a_503_never_a_false_success(exchange_app, idp, own_redis):
    """THREATS.md "logout while Redis is down": 503 and nothing persisted; the caller retries."""
    http = exchange_app.test_client()
    token = idp.access_token("00u1", sid="s-1")
    assert http.get("/t/acme/oidc/userinfo", headers=bearer(token)).status_code == 200
    own_redis.stop()
    for answer in (
        http.post("/t/acme/oidc/logout", headers=bearer(token)),
        http.get("/t/acme/oidc/userinfo", headers=bearer(token)),  # the check fails closed
    ):
        assert answer.status_code == 503
        assert int(answer.headers["Retry-After"]) > 0
    with runtime.of(exchange_app).db.read() as session:
        tenants.find(session, "acme")
        assert session.scalars(select(SessionRevocation)).first() is None
    own_redis.start()
    assert http.post("/t/acme/oidc/logout", headers=bearer(token)).status_code == 204
    assert http.get("/t/acme/oidc/userinfo", headers=bearer(token)).status_code == 401


def test_redis_restarted_empty_keeps_logouts_and_revoked_grants(
    exchange_app, idp, own_redis, admin_headers
):
    from tests.test_exchange import basic, exchange_form

    http = exchange_app.test_client()
    ended = idp.access_token("00u1", sid="s-1")
    assert http.post("/t/acme/oidc/logout", headers=bearer(ended)).status_code == 204
    live = idp.access_token("00u1", sid="s-2")
    assert http.post(TOKEN, data=exchange_form(live), headers=basic()).status_code == 200
    grant = "/admin/v1/tenants/acme/grants/broker/snowflake-prod"
    assert http.delete(grant, headers=admin_headers).status_code == 204
    own_redis.stop()
    own_redis.start()  # empty
    assert http.get("/t/acme/oidc/userinfo", headers=bearer(ended)).status_code == 401
    assert http.get("/t/acme/oidc/userinfo", headers=bearer(live)).status_code == 200
    refused = http.post(TOKEN, data=exchange_form(live), headers=basic())
    assert refused.status_code == 400 and refused.json["error"] == "unauthorized_client"
    refused = http.post(TOKEN, data=exchange_form(ended), headers=basic())
    assert refused.status_code == 400 and refused.json["error"] == "invalid_request"
