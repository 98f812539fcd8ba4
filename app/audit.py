"""The audit log of the token endpoint and the mapping query (DOMAIN.md: AuditEvent).

Append-only: ``record`` adds a row and nothing here updates or deletes one. A row names who
(client, actor chain) did what (``action``) for whom (user id), towards which integration,
audience and scope, the outcome, and for a refusal its error code and reason; never a token
or a secret. A write that fails fails the action it records (the caller answers 503 and issues
nothing: THREATS.md "audit write fails").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.models import AuditEvent, utcnow

SUCCESS = "success"
FAILURE = "failure"
OUTCOMES = (SUCCESS, FAILURE)


@dataclass
class Entry:
    """What an action is about, filled in as the pipeline learns it."""

    action: str
    request_id: str = ""
    client_id: str = ""
    actors: list[str] = field(default_factory=list)
    subject: str = ""
    integration: str = ""
    audience: str = ""
    scope: str = ""


def record(
    session: Session,
    tenant_id: int,
    entry: Entry,
    outcome: str,
    error_code: str = "",
    reason: str = "",
) -> None:
    """Append one row, as one INSERT without the unit of work (every exchange writes one).

    The tenant guard checks the INSERT (``app.tenancy``): only the session's own tenant can be
    recorded."""
    values = {
        "tenant_id": tenant_id,
        "at": utcnow(),
        "action": entry.action,
        "client_id": entry.client_id[:200],
        "actors": list(entry.actors),
        "subject": entry.subject[:255],
        "integration": entry.integration[:100],
        "audience": entry.audience[:2000],
        "scope": entry.scope[:2000],
        "outcome": outcome,
        "error_code": error_code[:50],
        "reason": reason[:500],
        "request_id": entry.request_id[:100],
    }
    session.execute(_INSERT, [values])


_INSERT = insert(AuditEvent)


def query(
    session: Session,
    *,
    limit: int,
    before: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    client_id: str | None = None,
    subject: str | None = None,
    integration: str | None = None,
    outcome: str | None = None,
) -> list[AuditEvent]:
    """Events of the session's tenant, newest first; ``before`` is the last id of the
    previous page (keyset paging)."""
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if before is not None:
        statement = statement.where(AuditEvent.id < before)
    if since is not None:
        statement = statement.where(AuditEvent.at >= since)
    if until is not None:
        statement = statement.where(AuditEvent.at < until)
    if client_id:
        statement = statement.where(AuditEvent.client_id == client_id)
    if subject:
        statement = statement.where(AuditEvent.subject == subject)
    if integration:
        statement = statement.where(AuditEvent.integration == integration)
    if outcome:
        statement = statement.where(AuditEvent.outcome == outcome)
    return list(session.scalars(statement))
