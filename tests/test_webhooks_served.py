"""The real thing: signed webhooks against `idbridge serve` (gunicorn workers), whose own
outbox job sends the mail to a real SMTP server; the test follows the link it received."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

from app import create_app, runtime
from tests import processes
from tests.conftest import empty_tables, make_settings
from tests.webhook_support import add_user, link_in, make_tenant, running_smtp, sign


@pytest.fixture
def smtp():
    yield from running_smtp()


def _wait_for(predicate, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_each_operation_end_to_end_on_a_served_idbridge(tmp_path, database_url, smtp):
    setup = create_app(make_settings(tmp_path / "setup", database_url=database_url))
    empty_tables(runtime.of(setup).db)
    acme = make_tenant(setup)
    add_user(setup, "acme", "00u1", "Ada@Example.com", customer="C-1")
    runtime.of(setup).db.dispose()

    served = processes.serve(tmp_path, database_url, SMTP_URL=smtp.url, OUTBOX_INTERVAL="0.3")
    base = served.base_url

    def call(operation: str, payload: dict, webhook_id: str | None = None) -> requests.Response:
        body = json.dumps(payload)
        headers = sign(acme.secret, body, webhook_id or f"msg_{uuid.uuid4().hex}")
        url = f"{base}/t/acme/webhooks/users/{operation}"
        return requests.post(url, data=body, headers=headers, timeout=10)

    try:
        got = call("get", {"email": "ada@EXAMPLE.com"})
        assert got.status_code == 200 and got.json()["id"] == "00u1"

        for _ in range(2):  # a retry of the same id: one mail
            sent = call("send-verification-email", {"id": "00u1"}, webhook_id="msg_verify")
            assert sent.status_code == 202
        assert _wait_for(lambda: len(smtp.messages) == 1)
        link = link_in(smtp.messages[0])
        assert link.startswith(f"{base}/t/acme/verify-email?token=")
        page = requests.get(link, timeout=10)
        assert page.status_code == 200 and "<h1>Email address confirmed</h1>" in page.text
        assert call("get", {"id": "00u1"}).json()["email_verified"] is True

        verified = call("mark-email-verified", {"id": "00u1"})
        assert verified.status_code == 200 and verified.json()["email_verified"] is True

        reset = call("send-password-reset-email", {"email": "ada@example.com"})
        unknown = call("send-password-reset-email", {"email": "nobody@example.com"})
        assert (reset.status_code, reset.content) == (unknown.status_code, unknown.content)
        assert _wait_for(lambda: len(smtp.messages) == 2)
        assert smtp.messages[1]["Subject"] == "Reset your password"

        assert call("delete", {"id": "00u1"}).status_code == 204
        assert call("get", {"id": "00u1"}).status_code == 404
    finally:
        served.stop()
    assert len(smtp.messages) == 2  # nothing was sent twice
