"""A ``webhook-id`` names one message (THREATS.md "Every path": a ``webhook-id`` reused with
another operation or another body is 409, nothing run).

A retry is the same operation with the same raw body bytes and gets the first response; the
id reused for another operation, or for a body one byte apart, is 409 ``conflict`` and runs
nothing (no user deleted, no mail queued, no address verified), also when two such deliveries
race. On SQLite and PostgreSQL, with in-process claims and with Redis claims.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app import create_app, runtime, tenants
from app.models import OutboxMessage, WebhookDelivery
from tests.conftest import empty_tables
from tests.redis_support import OwnRedis
from tests.webhook_support import Tenant, add_user, load_user, make_tenant, sign, signed

CONFLICT = "conflict"


@pytest.fixture(params=["local-claims", "redis-claims"])
def app(request, settings, tmp_path) -> Iterator[Flask]:
    server = None
    if request.param == "redis-claims":
        server = OwnRedis(tmp_path)
        server.start()
        settings = dataclasses.replace(settings, redis_url=server.url)
    flask_app = create_app(settings)
    empty_tables(runtime.of(flask_app).db)
    try:
        yield flask_app
    finally:
        runtime.of(flask_app).db.dispose()
        if server is not None:
            server.stop()


@pytest.fixture
def acme(app) -> Tenant:
    tenant = make_tenant(app)
    add_user(app, "acme", "00u1", "ada@example.com")
    add_user(app, "acme", "00u2", "grace@example.com")
    return tenant


def outbox_count(app: Flask) -> int:
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        return session.scalar(select(func.count()).select_from(OutboxMessage))


def deliveries(app: Flask) -> list[WebhookDelivery]:
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        return list(session.scalars(select(WebhookDelivery)))


def assert_conflict(response: Any) -> None:
    assert response.status_code == 409, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == CONFLICT and "webhook-id" in body["message"]


# --- another operation ----------------------------------------------------------------------


def test_a_get_id_reused_for_delete_deletes_nothing(client, app, acme):
    first = signed(client, acme, "get", {"id": "00u1"}, webhook_id="msg_1")
    assert first.status_code == 200
    assert_conflict(signed(client, acme, "delete", {"id": "00u1"}, webhook_id="msg_1"))
    assert load_user(app, "acme", "00u1") is not None
    retry = signed(client, acme, "get", {"id": "00u1"}, webhook_id="msg_1")
    assert retry.status_code == 200 and retry.get_json() == first.get_json()


@pytest.mark.parametrize(
    "operation", ["send-verification-email", "mark-email-verified", "delete", "get"]
)
def test_an_id_reused_for_another_operation_runs_nothing(client, app, acme, operation):
    first = "get" if operation != "get" else "mark-email-verified"
    assert signed(client, acme, first, {"id": "00u2"}, webhook_id="msg_2").status_code == 200
    before = load_user(app, "acme", "00u2")
    assert_conflict(signed(client, acme, operation, {"id": "00u2"}, webhook_id="msg_2"))
    after = load_user(app, "acme", "00u2")
    assert after is not None and before is not None
    assert (after.email_verified, after.updated_at) == (before.email_verified, before.updated_at)
    assert outbox_count(app) == 0
    assert [row.operation for row in deliveries(app)] == [first]


def test_a_password_reset_id_reused_for_another_address_sends_nothing(client, app, acme):
    reset = "send-password-reset-email"
    assert signed(client, acme, reset, {"email": "ada@example.com"}, "msg_r").status_code == 202
    assert outbox_count(app) == 1
    assert_conflict(signed(client, acme, reset, {"email": "grace@example.com"}, "msg_r"))
    assert outbox_count(app) == 1


# --- another body -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "other", ['{"id": "00u2"}', '{"id":"00u1"}', '{"id": "00u1"} '], ids=["user", "space", "tail"]
)
def test_a_body_one_byte_apart_is_another_message(client, app, acme, other):
    body = '{"id": "00u1"}'
    assert signed(client, acme, "delete", body, webhook_id="msg_3").status_code == 204
    add_user(app, "acme", "00u1", "ada@example.com")  # back again (say, by SCIM)
    assert_conflict(signed(client, acme, "delete", other, webhook_id="msg_3"))
    assert load_user(app, "acme", "00u1") is not None
    assert load_user(app, "acme", "00u2") is not None


def test_a_true_retry_gets_the_first_response_and_runs_nothing(client, app, acme):
    body = '{"id": "00u1"}'
    first = signed(client, acme, "get", body, webhook_id="msg_4")
    signed(client, acme, "mark-email-verified", {"id": "00u1"})
    retry = signed(client, acme, "get", body, webhook_id="msg_4")
    assert retry.status_code == 200 and retry.get_json() == first.get_json()
    assert retry.get_json()["email_verified"] is False


def test_the_fingerprint_is_a_keyed_hash_never_the_body(client, app, acme):
    body = '{"id": "00u1"}'
    signed(client, acme, "get", body, webhook_id="msg_5")
    (row,) = deliveries(app)
    assert row.fingerprint is not None and len(row.fingerprint) == 64
    unkeyed = hashlib.sha256(b"webhook\x1fget\x1f" + body.encode()).hexdigest()
    assert row.fingerprint != unkeyed


def test_an_id_recorded_before_fingerprints_is_compared_by_operation(client, app, acme):
    """Rows from before migration 0008 have no fingerprint: for the 24 hours they are kept, the
    same operation gets the first response and another operation is refused."""
    first = signed(client, acme, "get", {"id": "00u1"}, webhook_id="msg_old")
    with runtime.of(app).db.transaction() as session:
        tenants.find(session, "acme")
        session.scalars(select(WebhookDelivery)).one().fingerprint = None
    retry = signed(client, acme, "get", {"id": "00u2"}, webhook_id="msg_old")
    assert retry.status_code == 200 and retry.get_json() == first.get_json()
    assert_conflict(signed(client, acme, "delete", {"id": "00u1"}, webhook_id="msg_old"))
    assert load_user(app, "acme", "00u1") is not None


# --- at once ------------------------------------------------------------------------------------


@pytest.mark.parametrize("instances", [1, 2])
def test_deliveries_of_one_id_with_different_bodies_at_once_run_one_message(
    app, acme, tmp_path, instances
):
    """Two instances share the database only (and Redis in Redis mode): their in-process claims
    do not see each other, so the database's unique key decides."""
    settings = runtime.of(app).settings
    apps = [app] + [
        create_app(dataclasses.replace(settings, instance_path=str(tmp_path / "second")))
        for _ in range(instances - 1)
    ]
    bodies = ['{"id": "00u1"}', '{"id": "00u2"}'] * 2
    barrier = threading.Barrier(len(bodies))
    results: list[tuple[str, int]] = []
    lock = threading.Lock()

    def deliver(index: int, body: str) -> None:
        http = apps[index % len(apps)].test_client()
        headers = sign(acme.secret, body, "msg_race")
        barrier.wait(timeout=10)
        response = http.post("/t/acme/webhooks/users/delete", data=body, headers=headers)
        with lock:
            results.append((body, response.status_code))

    threads = [threading.Thread(target=deliver, args=item) for item in enumerate(bodies)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        for other in apps[1:]:
            runtime.of(other).db.dispose()
    winners = {body for body, status in results if status == 204}
    assert len(winners) == 1, results
    (winner,) = winners
    assert sorted(status for _body, status in results) == [204, 204, 409, 409], results
    gone = [subject for subject in ("00u1", "00u2") if load_user(app, "acme", subject) is None]
    assert gone == ["00u1" if "00u1" in winner else "00u2"]
