"""``webhook-id`` as an idempotency key (CONTRACT §1, Standard Webhooks "idempotency").

``run`` executes an operation at most once per (tenant, webhook id) and answers a repeat with
the first response, status and body. The key is inserted first, in the operation's own
transaction, under a unique constraint: a concurrent second delivery of the same id waits for
the first transaction (PostgreSQL's unique index, SQLite's write lock) and then finds the
recorded response instead of running the operation again. A response that says "try again"
(503) is not recorded: the transaction rolls back entirely and a retry runs afresh. Keys are
remembered for 24 hours (``app.jobs.cleanup`` deletes older ones; an older one found here is
treated as new).

An id names one message: a repeat is the same operation with the same raw body bytes, compared
by a keyed hash of both (``Message.fingerprint``; the body itself is never stored). The id
reused for another operation or another body is refused with ``Conflict`` (409) and runs
nothing, like an idempotency key reused with another payload (Stripe; the IETF draft "The
Idempotency-Key HTTP Header Field" answers 422, the webhook contract's code for a request that
conflicts is ``conflict``). Rows recorded before the fingerprint existed (migration 0008) are
compared by operation only until they expire.

The database row stays the record because the contract needs the first outcome, and only the
database can commit it atomically with the operation's own writes. In front of it, a
``DeliveryClaims`` holds the id while its first delivery runs: a concurrent delivery waits
there (a bounded ``WAIT``, then 503 with ``Retry-After``) rather than in a database
transaction, then finds the recorded outcome. ``LocalDeliveryClaims`` serialises the threads
of one process; ``app.shared_redis.RedisDeliveryClaims`` every instance sharing a Redis (if
Redis cannot answer: 503, fail closed).
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import tenants
from app.crypto import Keyring
from app.database import Database
from app.errors import Conflict, DomainError, StoreUnavailable
from app.models import Tenant, WebhookDelivery, utcnow

KEEP_DELIVERIES = timedelta(hours=24)  # webhook ids are remembered this long (CONTRACT §1)

WAIT = 5.0  # seconds a delivery waits for a concurrent one of the same id


class DeliveryClaims(Protocol):
    def hold(self, slug: str, key: str) -> AbstractContextManager[None]:
        """Hold ``key`` of tenant ``slug`` for the block; a concurrent holder of the same key
        waits until it is released, at most ``WAIT``, then gets ``StoreUnavailable``."""
        ...


class LocalDeliveryClaims:
    """One process: a lock per key held, forgotten when nobody holds or waits for it."""

    def __init__(self, wait: float = WAIT) -> None:
        self.wait = wait
        self._locks: dict[tuple[str, str], tuple[threading.Lock, int]] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, slug: str, key: str) -> Iterator[None]:
        name = (slug, key)
        with self._guard:
            lock, users = self._locks.get(name, (threading.Lock(), 0))
            self._locks[name] = (lock, users + 1)
        try:
            if not lock.acquire(timeout=self.wait):
                raise StoreUnavailable("a delivery with this id is in progress")
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                lock, users = self._locks[name]
                if users == 1:
                    del self._locks[name]
                else:
                    self._locks[name] = (lock, users - 1)


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Message:
    """A delivery as received: its ``webhook-id``, its operation and the exact bytes signed."""

    key: str
    operation: str
    body: bytes

    def fingerprint(self, keyring: Keyring) -> str:
        """A keyed hash (``Keyring.hash_token``) of the operation and the raw body: equal for
        a retry, different for any other message; useless to whoever reads the table."""
        return keyring.hash_token(b"\x1f".join((b"webhook", self.operation.encode(), self.body)))


Operation = Callable[[Session, Tenant], Outcome]


def run(db: Database, keyring: Keyring, slug: str, message: Message, action: Operation) -> Outcome:
    """Run ``action`` once for ``message.key`` in one transaction; a retry of the message gets
    the first outcome, another message under the same key a ``Conflict``."""
    from app import shared

    with db.info[shared.EXTENSION].deliveries.hold(slug, message.key):
        return _run(db, slug, message, message.fingerprint(keyring), action)


_BY_KEY = select(WebhookDelivery).where(WebhookDelivery.webhook_id == bindparam("key"))


def _run(db: Database, slug: str, message: Message, fingerprint: str, action: Operation) -> Outcome:
    with db.transaction() as session:
        tenant = tenants.find(session, slug)
        claimed = _claim(session, message, fingerprint)
        if isinstance(claimed, Outcome):
            return claimed
        try:
            with session.begin_nested():
                outcome = action(session, tenant)
        except DomainError as exc:
            if exc.status >= 500:
                raise
            outcome = Outcome(exc.status, {"code": exc.code, "message": exc.message})
        claimed.status = outcome.status
        claimed.body = "" if outcome.body is None else json.dumps(outcome.body)
        return outcome


def _claim(session: Session, message: Message, fingerprint: str) -> WebhookDelivery | Outcome:
    """Insert the key and return its row, or return the outcome recorded for it.

    The insert comes first: a new id (nearly every delivery) costs no lookup."""
    for _attempt in range(2):
        delivery = WebhookDelivery(
            webhook_id=message.key, operation=message.operation, fingerprint=fingerprint
        )
        try:
            with session.begin_nested():
                session.add(delivery)
                session.flush()
            return delivery
        except IntegrityError:
            # Recorded before, or another delivery of the same id committed meanwhile.
            existing = session.scalars(
                _BY_KEY, {"key": message.key}, execution_options={"populate_existing": True}
            ).first()
        if existing is None:
            break
        if existing.created_at > utcnow() - KEEP_DELIVERIES:
            if not _same_message(existing, message.operation, fingerprint):
                raise Conflict(
                    "this webhook-id was used for another message (another operation or "
                    "another body): a retry resends the same bytes, a new message needs a new id"
                )
            return _outcome(existing)
        session.delete(existing)  # older than the contract remembers: treated as new
        session.flush()
    raise StoreUnavailable("a delivery with this id is in progress")


def _same_message(delivery: WebhookDelivery, operation: str, fingerprint: str) -> bool:
    if delivery.fingerprint is None:  # recorded before fingerprints (0008): operation only
        return delivery.operation == operation
    return hmac.compare_digest(delivery.fingerprint, fingerprint)


def _outcome(delivery: WebhookDelivery) -> Outcome:
    return Outcome(delivery.status, json.loads(delivery.body) if delivery.body else None)
