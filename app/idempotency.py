"""``webhook-id`` as an idempotency key (CONTRACT §1, Standard Webhooks "idempotency").

``run`` executes an operation at most once per (tenant, webhook id) and answers a repeat with
the first response, status and body. The key is inserted first, in the operation's own
transaction, under a unique constraint: a concurrent second delivery of the same id waits for
the first transaction (PostgreSQL's unique index, SQLite's write lock) and then finds the
recorded response instead of running the operation again. A response that says "try again"
(503) is not recorded: the transaction rolls back entirely and a retry runs afresh. Keys are
remembered for 24 hours (``app.jobs.cleanup`` deletes older ones; an older one found here is
treated as new).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import tenants
from app.database import Database
from app.errors import DomainError, StoreUnavailable
from app.models import Tenant, WebhookDelivery, utcnow

KEEP_DELIVERIES = timedelta(hours=24)  # webhook ids are remembered this long (CONTRACT §1)


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, Any] | None = None


Operation = Callable[[Session, Tenant], Outcome]


def run(db: Database, slug: str, key: str, operation: str, action: Operation) -> Outcome:
    """Run ``action`` once for ``key`` in one transaction; a repeat gets the first outcome."""
    with db.transaction() as session:
        tenant = tenants.find(session, slug)
        first = _claim(session, key, operation)
        if first is not None:
            return first
        try:
            with session.begin_nested():
                outcome = action(session, tenant)
        except DomainError as exc:
            if exc.status >= 500:
                raise
            outcome = Outcome(exc.status, {"code": exc.code, "message": exc.message})
        delivery = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.webhook_id == key)
        ).one()
        delivery.status = outcome.status
        delivery.body = "" if outcome.body is None else json.dumps(outcome.body)
        return outcome


def _claim(session: Session, key: str, operation: str) -> Outcome | None:
    """Insert the key, or return the outcome recorded for it."""
    statement = select(WebhookDelivery).where(WebhookDelivery.webhook_id == key)
    existing = session.scalars(statement).first()
    if existing is not None and existing.created_at > utcnow() - KEEP_DELIVERIES:
        return _outcome(existing)
    if existing is not None:
        session.delete(existing)
        session.flush()
    try:
        with session.begin_nested():
            session.add(WebhookDelivery(webhook_id=key, operation=operation))
            session.flush()
    except IntegrityError:
        # Another delivery of the same id committed while this one waited on the index.
        existing = session.scalars(statement.execution_options(populate_existing=True)).first()
        if existing is None:
            raise StoreUnavailable("a delivery with this id is in progress") from None
        return _outcome(existing)
    return None


def _outcome(delivery: WebhookDelivery) -> Outcome:
    return Outcome(delivery.status, json.loads(delivery.body) if delivery.body else None)
