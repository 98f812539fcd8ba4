"""The durable outbox: mail and identity-provider calls that leave idbridge after the request.

A webhook never waits for SMTP or for the IdP to send a mail: it adds an ``OutboxMessage`` in
its own transaction (so the message exists exactly when the operation happened) and answers.
``send_due`` then delivers what is due, with exponential backoff on failure, so an SMTP or
IdP outage loses nothing and fails no webhook (THREATS.md, Faults). One message per
``(tenant, idempotency_key)``: a webhook retry can never queue a second one.

Claiming is atomic and short: one transaction takes due rows (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, the write lock of ``BEGIN IMMEDIATE`` on SQLite), pushes their next attempt one
lease ahead and commits; the sending happens outside any transaction, then a second
transaction records the outcome. Two workers therefore never send one message at once, and
a worker that dies mid-send leaves the message to be retried when its lease ends.

``app.jobs`` runs ``send_due`` every ``IDBRIDGE_OUTBOX_INTERVAL`` seconds on one instance at
a time; tests call ``send_due`` directly.
"""

from __future__ import annotations

import json
import logging
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import connectors, mail, tenancy
from app.errors import NotFound
from app.models import OutboxMessage, Tenant, utcnow
from app.runtime import Runtime

LEASE = timedelta(minutes=5)
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)
MAX_ATTEMPTS = 15
MAIL = "mail"
CONNECTOR_PREFIX = "connector:"
log = logging.getLogger("idbridge.outbox")


def _context(tenant_id: int) -> str:
    return f"tenant:{tenant_id}:outbox"


def enqueue(
    session: Session, rt: Runtime, tenant: Tenant, key: str, kind: str, payload: dict[str, Any]
) -> None:
    """Queue one message in the caller's transaction; a second one with ``key`` is ignored."""
    exists = select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)
    if session.scalar(exists) is not None:
        return
    sealed = rt.keyring.seal(json.dumps(payload), _context(tenant.id))
    session.add(OutboxMessage(idempotency_key=key, kind=kind, payload_sealed=sealed))
    session.flush()


def enqueue_mail(
    session: Session,
    rt: Runtime,
    tenant: Tenant,
    key: str,
    kind: str,
    recipient: str,
    link: str,
    hours: int,
) -> None:
    """Queue a ``kind`` mail for ``recipient`` as stored; rendered when it is sent, so the
    request path does no template work and queued mail uses the templates of the day."""
    payload = {
        "template": kind,
        "tenant_slug": tenant.slug,
        "tenant_name": tenant.display_name or tenant.slug,
        "sender": tenant.mail_from or default_sender(rt),
        "recipient": recipient,
        "link": link,
        "hours": str(hours),
    }
    enqueue(session, rt, tenant, key, MAIL, payload)


def _render(rt: Runtime, payload: dict[str, str]) -> mail.Mail:
    subject, text, html = mail.render(
        rt.settings.instance_path,
        payload["tenant_slug"],
        payload["template"],
        {
            "link": payload["link"],
            "tenant": payload["tenant_name"],
            "email": payload["recipient"],
            "hours": payload["hours"],
        },
    )
    return mail.Mail(payload["sender"], payload["recipient"], subject, text, html)


def enqueue_connector(
    session: Session,
    rt: Runtime,
    tenant: Tenant,
    key: str,
    action: connectors.Action,
    subject: str,
) -> None:
    """Queue a call to the tenant's connector (its IdP sends the mail itself)."""
    enqueue(session, rt, tenant, key, CONNECTOR_PREFIX + action, {"subject": subject})


def default_sender(rt: Runtime) -> str:
    return f"no-reply@{urlsplit(rt.settings.public_url).hostname or 'localhost'}"


@dataclass(frozen=True)
class _Claimed:
    id: int
    tenant_id: int
    kind: str
    payload_sealed: str
    attempts: int


def send_due(rt: Runtime, now: datetime | None = None, limit: int = 50) -> int:
    """Deliver the messages that are due; return how many went out. Safe to run in parallel."""
    now = now or utcnow()
    with rt.db.transaction() as session:
        tenancy.cross_tenant(session)
        rows = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.state == "pending", OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        claimed = []
        for row in rows:
            row.attempts += 1
            row.next_attempt_at = now + LEASE
            claimed.append(
                _Claimed(row.id, row.tenant_id, row.kind, row.payload_sealed, row.attempts)
            )
    sent = 0
    for message in claimed:
        outcome, error = _deliver(rt, message)
        _record(rt, message, outcome, error, now)
        sent += outcome == "sent"
    return sent


def _deliver(rt: Runtime, message: _Claimed) -> tuple[str, str]:
    """("sent" | "retry" | "dead", a short reason without any of the message's content)."""
    try:
        payload = json.loads(rt.keyring.open(message.payload_sealed, _context(message.tenant_id)))
        if message.kind == MAIL:
            mail.send(rt.settings.smtp_url, _render(rt, payload))
        elif message.kind.startswith(CONNECTOR_PREFIX):
            _call_connector(
                rt,
                message.tenant_id,
                message.kind.removeprefix(CONNECTOR_PREFIX),
                payload["subject"],
            )
        else:
            return "dead", f"unknown kind {message.kind!r}"
    except NotFound:
        return "dead", "the identity provider does not know the user"
    except smtplib.SMTPAuthenticationError:  # configuration: retried until it is fixed
        return "retry", "the mail server refused idbridge's credentials"
    except smtplib.SMTPRecipientsRefused:
        return "dead", "the mail server refused the recipient"
    except smtplib.SMTPResponseException as exc:
        return ("dead" if exc.smtp_code >= 500 else "retry"), f"SMTP {exc.smtp_code}"
    except (mail.MailNotConfigured, smtplib.SMTPException, OSError) as exc:
        return "retry", type(exc).__name__
    except connectors.ConnectorUnavailable as exc:
        return "retry", exc.message
    except Exception as exc:  # an unreadable template, a sealed value that no longer opens, ...
        log.exception("outbox message %s failed unexpectedly", message.id)
        return "retry", type(exc).__name__
    return "sent", ""


def _call_connector(rt: Runtime, tenant_id: int, action: str, subject: str) -> None:
    with rt.db.read() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound("the tenant is gone")
        tenancy.scope(session, tenant)
        connector = connectors.for_tenant(tenant, rt.keyring, rt.settings.allow_private_urls)
    calls = {
        "send_verification_email": connector.send_verification_email,
        "send_password_reset_email": connector.send_password_reset_email,
        "end_sessions": connector.end_sessions,
    }
    if action not in calls:
        raise NotFound(f"unknown connector action {action!r}")
    calls[action](subject)


def _record(rt: Runtime, message: _Claimed, outcome: str, error: str, now: datetime) -> None:
    values: dict[str, Any] = {"last_error": error[:500]}
    if outcome == "sent":
        values |= {"state": "sent", "sent_at": utcnow()}
    elif outcome == "dead" or message.attempts >= MAX_ATTEMPTS:
        values["state"] = "dead"
    else:
        delay = min(FIRST_RETRY * 2 ** (message.attempts - 1), LONGEST_RETRY)
        values["next_attempt_at"] = now + delay
    if outcome != "sent":
        log.warning(
            "outbox message %s not sent (attempt %s, %s): %s",
            message.id,
            message.attempts,
            values.get("state", "will retry"),
            error,
        )
    with rt.db.transaction() as session:
        tenancy.scope_id(session, message.tenant_id)  # the message's own tenant, no other
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
