"""What the webhook, mail and connector tests share: a real SMTP server, signed calls, users.

``smtp`` starts aiosmtpd on 127.0.0.1 (a free port) and stops it at teardown; it can be
stopped and started again on the same port to play an outage. ``signed`` makes a Standard
Webhooks request with ``standardwebhooks.Webhook(secret).sign``, exactly as the Users service
does.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from standardwebhooks import Webhook
from werkzeug.test import TestResponse

from app import credentials, runtime, tenants, users
from app.crypto import generate_webhook_secret
from app.models import User
from app.schemas import TenantSchema
from tests.conftest import remember_secret
from tests.processes import free_port

LINK = re.compile(r"https?://\S+")


@dataclass
class _Handler:
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(parsed)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on loopback; ``stop``/``start`` again on the same port for outages."""

    def __init__(self) -> None:
        self.handler = _Handler()
        self.port = free_port()
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def text_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


def html_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]


def link_in(message: EmailMessage) -> str:
    found = LINK.search(text_of(message))
    assert found, "no link in the mail"
    link = found.group(0)
    remember_secret(link.rpartition("token=")[2])
    return link


def running_smtp() -> Iterator[SmtpServer]:
    """Body of an ``smtp`` fixture: a started server, stopped when the test ends."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@dataclass
class Tenant:
    slug: str
    secret: str


def make_tenant(
    app: Flask,
    slug: str = "acme",
    idp: dict[str, Any] | None = None,
    secret: str | None = None,
    **extra: Any,
) -> Tenant:
    rt = runtime.of(app)
    secret = remember_secret(secret or generate_webhook_secret())
    data: dict[str, Any] = {
        "slug": slug,
        "display_name": slug.upper(),
        "mail": {
            "from": f"no-reply@{slug}.example",
            "password_reset_url": f"https://app.{slug}.example/reset?lang=en",
        },
    } | extra
    if idp is not None:
        data["idp"] = idp
    with rt.db.transaction() as session:
        tenant = tenants.create(session, rt.keyring, TenantSchema().load(data))
        credentials.add_webhook_secret(session, rt.keyring, tenant, secret)
    return Tenant(slug, secret)


def add_secret(app: Flask, slug: str) -> str:
    rt = runtime.of(app)
    secret = remember_secret(generate_webhook_secret())
    with rt.db.transaction() as session:
        tenant = tenants.find(session, slug)
        credentials.add_webhook_secret(session, rt.keyring, tenant, secret)
    return secret


def add_user(app: Flask, slug: str, subject: str, email_address: str | None, **values: Any) -> None:
    rt = runtime.of(app)
    with rt.db.transaction() as session:
        tenants.find(session, slug)
        session.add(
            User(
                scim_id=str(uuid.uuid4()),
                subject=subject,
                user_name=subject,
                user_name_canonical=subject,
                email=email_address,
                email_canonical=users.canonical_email(email_address) if email_address else None,
                **values,
            )
        )


def load_user(app: Flask, slug: str, subject: str) -> User | None:
    with runtime.of(app).db.read() as session:
        tenants.find(session, slug)
        try:
            return users.by_subject(session, subject)
        except Exception:
            return None


def sign(secret: str, body: str, webhook_id: str, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
        "Content-Type": "application/json",
    }


def signed(
    client: FlaskClient,
    tenant: Tenant,
    operation: str,
    payload: Any,
    webhook_id: str | None = None,
    secret: str | None = None,
    slug: str | None = None,
) -> TestResponse:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    headers = sign(secret or tenant.secret, body, webhook_id or f"msg_{uuid.uuid4().hex}")
    return client.post(
        f"/t/{slug or tenant.slug}/webhooks/users/{operation}", data=body, headers=headers
    )
