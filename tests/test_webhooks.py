"""User webhooks (CONTRACT §1): the User object, signatures, idempotency, errors.

Every request is signed with ``standardwebhooks.Webhook(secret).sign`` and goes through the
real app on SQLite and PostgreSQL. THREATS.md, Webhooks, is tested line by line here (the
mail and verification-link lines in ``test_webhook_mail.py``).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook

from app import jobs, revocation, runtime, tenants, users
from app.models import OutboxMessage, WebhookDelivery
from tests.webhook_support import (
    add_secret,
    add_user,
    load_user,
    make_tenant,
    sign,
    signed,
)


@pytest.fixture
def acme(app):
    tenant = make_tenant(app)
    add_user(app, "acme", "00u1abcd", "Ada@Example.com", customer="C-100042")
    return tenant


def outbox_count(app, slug="acme") -> int:
    with runtime.of(app).db.read() as session:
        tenants.find(session, slug)
        return session.scalar(select(func.count()).select_from(OutboxMessage))


# --- the User object ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "lookup", [{"id": "00u1abcd"}, {"email": "ADA@example.COM"}, {"customer": "C-100042"}]
)
def test_get_answers_the_user_exactly_as_the_contract_says(client, app, acme, lookup):
    with runtime.of(app).db.transaction() as session:
        tenants.find(session, "acme")
        user = users.by_subject(session, "00u1abcd")
        user.logins_count = 3
        user.login_time = datetime(2026, 11, 24, 9, 30, 0, 123456, tzinfo=UTC)
        user.email_verified = True
    response = signed(client, acme, "get", lookup)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert list(body) == [
        "tenant",
        "id",
        "customer",
        "email",
        "create_time",
        "update_time",
        "logins_count",
        "login_time",
        "email_verified",
        "blocked",
    ]
    assert body["tenant"] == "acme" and body["id"] == "00u1abcd"
    assert body["customer"] == "C-100042"
    assert body["email"] == "Ada@Example.com"  # as stored, not canonical
    assert body["logins_count"] == "3"  # int64 as a decimal string
    assert body["login_time"] == "2026-11-24T09:30:00Z"
    for name in ("create_time", "update_time"):
        assert datetime.strptime(body[name], "%Y-%m-%dT%H:%M:%SZ")
    assert body["email_verified"] is True and body["blocked"] is False


def test_unset_optional_fields_are_omitted_and_blocked_follows_the_user(client, app, acme):
    add_user(app, "acme", "00u2", None, active=False)
    body = signed(client, acme, "get", {"id": "00u2"}).get_json()
    assert "customer" not in body and "email" not in body and "login_time" not in body
    assert body["logins_count"] == "0" and body["email_verified"] is False
    assert body["blocked"] is True
    add_user(app, "acme", "00u3", "grace@example.com", operator_blocked=True)
    assert signed(client, acme, "get", {"id": "00u3"}).get_json()["blocked"] is True


def test_an_unknown_user_is_not_found(client, acme):
    for operation, payload in [
        ("get", {"id": "nobody"}),
        ("get", {"email": "ada@example.co"}),
        ("delete", {"id": "nobody"}),
        ("mark-email-verified", {"id": "nobody"}),
        ("send-verification-email", {"id": "nobody"}),
    ]:
        response = signed(client, acme, operation, payload)
        assert response.status_code == 404, operation
        assert response.get_json()["code"] == "not_found"
        assert set(response.get_json()) == {"code", "message"}


# --- bad input is a 400, never a 500 --------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("get", "{not json"),
        ("get", '{"id": "00u1abcd", "email": "ada@example.com"}'),
        ("get", "{}"),
        ("get", "[]"),
        ("get", '"00u1abcd"'),
        ("get", '{"id": 42}'),
        ("get", '{"id": null}'),
        ("get", '{"id": ""}'),
        ("get", '{"id": "a\\u0000b"}'),
        ("get", '{"id": "\\ud800"}'),
        ("delete", '{"id": "00u1abcd", "force": true}'),
        ("delete", '{"email": "ada@example.com"}'),
        ("mark-email-verified", '{"id": ["00u1abcd"]}'),
        ("send-password-reset-email", '{"email": 7}'),
        ("send-password-reset-email", '{"email": "a@b.c", "id": "x"}'),
        ("send-verification-email", ""),
    ],
)
def test_bad_input_is_invalid_request(client, app, acme, operation, body):
    response = signed(client, acme, operation, body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["code"] == "invalid_request"
    assert response.get_json()["message"]
    assert load_user(app, "acme", "00u1abcd") is not None


# --- signatures (THREATS.md, Webhooks) -------------------------------------------------------

UNAUTHORIZED = {
    "code": "unauthorized",
    "message": "the webhook signature is missing, stale or wrong",
}


def _delete(client, slug, body, headers):
    return client.post(f"/t/{slug}/webhooks/users/delete", data=body, headers=headers)


@pytest.mark.parametrize("minutes", [-6, 6])
def test_a_stale_or_future_timestamp_is_refused_and_nothing_runs(client, app, acme, minutes):
    body = '{"id": "00u1abcd"}'
    at = datetime.now(UTC) + timedelta(minutes=minutes)
    response = _delete(client, "acme", body, sign(acme.secret, body, "msg_stale", at))
    assert response.status_code == 401 and response.get_json() == UNAUTHORIZED
    assert load_user(app, "acme", "00u1abcd") is not None


def test_a_timestamp_inside_the_tolerance_is_accepted(client, app, acme):
    body = '{"id": "00u1abcd"}'
    at = datetime.now(UTC) - timedelta(minutes=4)
    assert _delete(client, "acme", body, sign(acme.secret, body, "msg_4min", at)).status_code == 204


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body: body.replace("00u1abcd", "00u1abce"),  # one byte
        lambda body: body + " ",  # trailing white space
        lambda body: json.dumps(json.loads(body), separators=(",", ":")),  # re-serialised
        lambda body: json.dumps(json.loads(body), indent=2),
    ],
)
def test_a_changed_or_reserialised_body_is_refused(client, app, acme, tamper):
    body = '{"id": "00u1abcd"}'
    headers = sign(acme.secret, body, "msg_tamper")
    response = _delete(client, "acme", tamper(body), headers)
    assert response.status_code == 401 and response.get_json() == UNAUTHORIZED
    assert load_user(app, "acme", "00u1abcd") is not None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "msg_1", "webhook-timestamp": "1"},
        {"webhook-id": "msg_1", "webhook-timestamp": "nan", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "msg_1", "webhook-timestamp": "1e99", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "msg_1", "webhook-timestamp": "x", "webhook-signature": "v1"},
        {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,!!!"},
        {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,a,b"},
    ],
)
def test_missing_or_garbled_signature_headers_are_unauthorized(client, acme, headers):
    response = _delete(client, "acme", '{"id": "00u1abcd"}', headers)
    assert response.status_code == 401 and response.get_json() == UNAUTHORIZED


def test_a_body_that_is_not_utf8_is_unauthorized(client, acme):
    headers = sign(acme.secret, "x", "msg_bytes")
    response = client.post("/t/acme/webhooks/users/get", data=b"\xff\xfe", headers=headers)
    assert response.status_code == 401


def test_during_rotation_any_active_secret_verifies_and_unknown_versions_are_ignored(
    client, app, acme
):
    new_secret = add_secret(app, "acme")
    body = '{"id": "00u1abcd"}'
    at = datetime.now(UTC)
    for webhook_id, signature in [
        ("msg_new", Webhook(new_secret).sign("msg_new", at, body)),
        ("msg_old", Webhook(acme.secret).sign("msg_old", at, body)),
    ]:
        headers = sign(new_secret, body, webhook_id, at) | {"webhook-signature": signature}
        response = client.post("/t/acme/webhooks/users/get", data=body, headers=headers)
        assert response.status_code == 200
    # two signatures, one of them with a secret idbridge does not know, plus unknown versions
    foreign = Webhook("whsec_" + "QUJD" * 8).sign("msg_two", at, body)
    valid = Webhook(acme.secret).sign("msg_two", at, body)
    headers = sign(acme.secret, body, "msg_two", at) | {
        "webhook-signature": f"v2,abc v1a,xyz {foreign} junk {valid}"
    }
    response = client.post("/t/acme/webhooks/users/get", data=body, headers=headers)
    assert response.status_code == 200
    # only unknown versions, even carrying the right MAC, is not a v1 signature
    headers["webhook-signature"] = "v2," + valid.partition(",")[2]
    headers["webhook-id"] = "msg_three"
    response = client.post("/t/acme/webhooks/users/get", data=body, headers=headers)
    assert response.status_code == 401


def test_a_deleted_secret_no_longer_verifies(client, app, acme, admin_headers):
    listed = client.get("/admin/v1/tenants/acme/webhook-secrets", headers=admin_headers)
    for row in listed.get_json():
        client.delete(f"/admin/v1/tenants/acme/webhook-secrets/{row['id']}", headers=admin_headers)
    response = signed(client, acme, "get", {"id": "00u1abcd"})
    assert response.status_code == 401 and response.get_json() == UNAUTHORIZED


def test_tenant_a_secret_under_tenant_b_is_refused_like_a_wrong_signature(client, app, acme):
    beta = make_tenant(app, "beta")
    add_user(app, "beta", "00u1abcd", "ada@example.com")
    wrong = signed(client, beta, "get", {"id": "00u1abcd"}, secret=acme.secret)
    assert wrong.status_code == 401 and wrong.get_json() == UNAUTHORIZED
    right = signed(client, beta, "get", {"id": "00u1abcd"})
    assert right.status_code == 200 and right.get_json()["tenant"] == "beta"
    # an unknown tenant (or an impossible slug) looks exactly the same: no existence oracle
    for slug in ("nosuch", "NOT-A-SLUG", "a%00b"):
        response = signed(client, acme, "get", {"id": "00u1abcd"}, slug=slug)
        assert response.status_code == 401 and response.get_json() == UNAUTHORIZED


# --- idempotency -------------------------------------------------------------------------


def test_a_retried_delete_runs_once_and_gets_the_first_response(client, app, acme):
    first = signed(client, acme, "delete", {"id": "00u1abcd"}, webhook_id="msg_del")
    add_user(app, "acme", "00u1abcd", "ada@example.com")  # back again (say, by SCIM)
    retry = signed(client, acme, "delete", {"id": "00u1abcd"}, webhook_id="msg_del")
    assert first.status_code == retry.status_code == 204
    assert retry.data == first.data == b""
    assert load_user(app, "acme", "00u1abcd") is not None  # the retry deleted nothing


def test_a_retry_gets_the_first_body_even_after_a_change(client, app, acme):
    first = signed(client, acme, "get", {"id": "00u1abcd"}, webhook_id="msg_get")
    signed(client, acme, "mark-email-verified", {"id": "00u1abcd"})
    retry = signed(client, acme, "get", {"id": "00u1abcd"}, webhook_id="msg_get")
    assert retry.status_code == 200 and retry.get_json() == first.get_json()
    assert retry.get_json()["email_verified"] is False
    fresh = signed(client, acme, "get", {"id": "00u1abcd"}, webhook_id="msg_get_2")
    assert fresh.get_json()["email_verified"] is True


def test_an_error_answer_is_remembered_too(client, app, acme):
    first = signed(client, acme, "get", {"id": "00u9"}, webhook_id="msg_404")
    add_user(app, "acme", "00u9", "nine@example.com")
    retry = signed(client, acme, "get", {"id": "00u9"}, webhook_id="msg_404")
    assert first.status_code == retry.status_code == 404
    assert retry.get_json() == first.get_json()


def test_a_retried_send_email_queues_one_message(client, app, acme):
    responses = [
        signed(client, acme, "send-verification-email", {"id": "00u1abcd"}, webhook_id="msg_v")
        for _ in range(3)
    ]
    assert [r.status_code for r in responses] == [202, 202, 202]
    assert outbox_count(app) == 1


def test_webhook_ids_are_per_tenant(client, app, acme):
    beta = make_tenant(app, "beta")
    add_user(app, "beta", "00u1abcd", "ada@example.com")
    assert signed(client, acme, "delete", {"id": "00u1abcd"}, webhook_id="msg_x").status_code == 204
    assert signed(client, beta, "delete", {"id": "00u1abcd"}, webhook_id="msg_x").status_code == 204
    assert load_user(app, "beta", "00u1abcd") is None


def test_an_id_older_than_24_hours_is_forgotten(client, app, acme):
    signed(client, acme, "get", {"id": "00u1abcd"}, webhook_id="msg_old")
    with runtime.of(app).db.transaction() as session:
        tenants.find(session, "acme")
        row = session.scalars(select(WebhookDelivery)).one()
        row.created_at = datetime.now(UTC) - timedelta(hours=25)
    retry = signed(client, acme, "delete", {"id": "00u1abcd"}, webhook_id="msg_old")
    assert retry.status_code == 204  # run afresh, not the old 200
    jobs.cleanup(runtime.of(app))
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


def test_two_deliveries_of_one_id_at_once_run_the_operation_once(app, acme):
    body = '{"id": "00u1abcd"}'
    headers = sign(acme.secret, body, "msg_race")
    barrier = threading.Barrier(4)
    results: list[int] = []

    def deliver() -> None:
        client = app.test_client()
        barrier.wait(timeout=10)
        response = client.post(
            "/t/acme/webhooks/users/send-verification-email", data=body, headers=headers
        )
        results.append(response.status_code)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [202, 202, 202, 202]
    assert outbox_count(app) == 1


# --- the operations ------------------------------------------------------------------------


def test_delete_removes_the_user_and_revokes_every_session_at_once(client, app, acme):
    before = datetime.now(UTC) - timedelta(seconds=1)
    response = signed(client, acme, "delete", {"id": "00u1abcd"})
    assert response.status_code == 204 and response.data == b""
    assert load_user(app, "acme", "00u1abcd") is None
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        assert revocation.is_revoked(session, "00u1abcd", "any-session", before)
    assert signed(client, acme, "get", {"id": "00u1abcd"}).status_code == 404


def test_mark_email_verified_answers_the_changed_user_and_is_idempotent(client, app, acme):
    first = signed(client, acme, "mark-email-verified", {"id": "00u1abcd"})
    assert first.status_code == 200 and first.get_json()["email_verified"] is True
    again = signed(client, acme, "mark-email-verified", {"id": "00u1abcd"})
    assert again.status_code == 200 and again.get_json() == first.get_json()


def test_send_verification_email_for_a_verified_address_is_a_conflict(client, app, acme):
    signed(client, acme, "mark-email-verified", {"id": "00u1abcd"})
    response = signed(client, acme, "send-verification-email", {"id": "00u1abcd"})
    assert response.status_code == 409 and response.get_json()["code"] == "conflict"
    add_user(app, "acme", "00u2", None)
    assert signed(client, acme, "send-verification-email", {"id": "00u2"}).status_code == 409
    assert outbox_count(app) == 0


def test_an_unavailable_store_is_a_503_with_retry_after(client, acme, monkeypatch):
    from app import idempotency
    from app.errors import StoreUnavailable

    def unavailable(*_args, **_kwargs):
        raise StoreUnavailable("the database is unavailable, try again shortly")

    monkeypatch.setattr(idempotency, "_claim", unavailable)
    response = signed(client, acme, "get", {"id": "00u1abcd"})
    assert response.status_code == 503 and response.headers["Retry-After"].isdigit()
    assert response.get_json()["code"] == "unavailable"
