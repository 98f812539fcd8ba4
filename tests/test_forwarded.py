"""Forwarded headers count only from the proxies in ``IDBRIDGE_TRUSTED_PROXIES``.

A spoofed ``X-Forwarded-*`` from any other peer changes nothing: not the logged client
address, not the issuer in discovery, not the links in mails.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from app import create_app, outbox, runtime
from app.settings import SettingsError
from tests.conftest import captured_logs, empty_tables, make_settings
from tests.webhook_support import add_user, link_in, make_tenant, running_smtp, sign

SPOOFED = {
    "X-Forwarded-For": "203.0.113.66",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Prefix": "/phish",
}
PUBLIC_URL = "https://idbridge.example.com"


@pytest.fixture
def smtp():
    yield from running_smtp()


def _app(tmp_path, database_url, smtp_url="", **overrides):
    flask_app = create_app(
        make_settings(
            tmp_path,
            database_url=database_url,
            public_url=PUBLIC_URL,
            smtp_url=smtp_url,
            **overrides,
        )
    )
    empty_tables(runtime.of(flask_app).db)
    return flask_app


def _logged_client(request_id: str) -> str:
    for line in captured_logs():
        entry = json.loads(line)
        if entry.get("request_id") == request_id and "status" in entry:
            return entry["client"]
    raise AssertionError(f"no access line for request {request_id}")


def _discover(flask_app, peer: str, headers: dict[str, str]) -> tuple[str, str]:
    """(issuer, logged client address) of one discovery request from ``peer``."""
    request_id = uuid.uuid4().hex
    response = flask_app.test_client().get(
        "/t/acme/.well-known/oauth-authorization-server",
        headers=headers | {"X-Request-Id": request_id},
        environ_base={"REMOTE_ADDR": peer},
    )
    assert response.status_code == 200
    return response.json["issuer"], _logged_client(request_id)


def test_without_trusted_proxies_a_spoofed_header_changes_nothing(tmp_path, database_url, smtp):
    flask_app = _app(tmp_path, database_url, smtp.url)
    try:
        tenant = make_tenant(flask_app)
        add_user(flask_app, "acme", "00u1", "ada@example.com")
        assert _discover(flask_app, "127.0.0.1", SPOOFED) == (f"{PUBLIC_URL}/t/acme", "127.0.0.1")
        body = '{"id": "00u1"}'
        response = flask_app.test_client().post(
            "/t/acme/webhooks/users/send-verification-email",
            data=body,
            headers=sign(tenant.secret, body, "msg_fwd") | SPOOFED,
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )
        assert response.status_code == 202
        assert outbox.send_due(runtime.of(flask_app), now=datetime.now(UTC)) == 1
        assert link_in(smtp.messages[0]).startswith(f"{PUBLIC_URL}/t/acme/verify-email?token=")
    finally:
        runtime.of(flask_app).db.dispose()


def test_a_trusted_proxy_gives_the_client_address_but_never_the_issuer(tmp_path, database_url):
    flask_app = _app(tmp_path, database_url, trusted_proxies="10.0.0.0/8, 192.0.2.1")
    try:
        make_tenant(flask_app)
        issuer, client = _discover(flask_app, "10.1.2.3", SPOOFED)
        assert (issuer, client) == (f"{PUBLIC_URL}/t/acme", "203.0.113.66")
        assert _discover(flask_app, "192.0.2.1", SPOOFED)[1] == "203.0.113.66"
        # one hop only: what the client itself put before the proxy's entry is not believed
        chained = SPOOFED | {"X-Forwarded-For": "198.51.100.9, 203.0.113.66"}
        assert _discover(flask_app, "10.1.2.3", chained)[1] == "203.0.113.66"
        # any other peer, even next door to a trusted one, is taken at its address
        assert _discover(flask_app, "192.0.2.2", SPOOFED) == (f"{PUBLIC_URL}/t/acme", "192.0.2.2")
    finally:
        runtime.of(flask_app).db.dispose()


@pytest.mark.parametrize("value", ["10.0.0.0/33", "proxy.example", "10.0.0.1/8"])
def test_a_bad_trusted_proxies_value_stops_the_start(tmp_path, value):
    with pytest.raises(SettingsError, match="IDBRIDGE_TRUSTED_PROXIES"):
        make_settings(tmp_path, trusted_proxies=value)
