"""The upstream-token cache as sealed rows of the deployment's database (the default).

Why the database and not each process's memory: ``idbridge serve`` runs several workers (and a
deployment several instances); a cache per process served a token revoked through another
worker, gave two answers in a row two different tokens and called the upstream once per
process. Every worker already shares the database, so here one table (``CachedToken``) is the
cache of the whole deployment: a purge is a DELETE in the revoking transaction (seen by every
worker as it commits, on any path: request, CLI, job), and single flight is a lease row.

- The hot path (``lookup``) reads one row by primary key inside the exchange's own read
  transaction: one prebuilt Core statement, no ORM entity; then it opens the sealed value.
- Single flight (``flight``): a caller missing a key claims it in a short committed
  transaction (insert the row, or take over one whose lease ended and whose value is stale);
  the others poll the row (reads only) for the holder's token, at most ``WAIT_SECONDS``, then
  obtain themselves. The holder stores the token in the exchange's re-check transaction
  (``app.token_cache.store_on``), which also clears the lease; if it fails, leaving the flight
  frees the lease at once, and a holder that died frees it when ``LEASE_SECONDS`` end.
- Expired rows and dead leases are swept by the hourly cleanup job (``app.jobs.cleanup``).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Delete, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.crypto import Keyring
from app.database import Database
from app.errors import DomainError
from app.models import CachedToken
from app.token_cache import (
    LEASE_SECONDS,
    POLL_SECONDS,
    WAIT_SECONDS,
    CacheKey,
    Digests,
    digest,
    good_until,
    seal,
    unseal,
)
from app.upstream import UpstreamToken

log = logging.getLogger(__name__)

TABLE = CachedToken.__table__
PURGE_CHUNK = 500  # hashes per DELETE of a bulk purge (a mapping import)

# Built once, bound per call: building a statement costs more than running it (bench/).
_LOOKUP = select(TABLE.c.sealed, TABLE.c.good_until, TABLE.c.lease_until).where(
    TABLE.c.key_hash == bindparam("key_hash"), TABLE.c.tenant_id == bindparam("tenant_id")
)
_TAKE_OVER = (
    update(TABLE)
    .where(
        TABLE.c.key_hash == bindparam("entry"),
        TABLE.c.lease_until <= bindparam("now"),
        TABLE.c.good_until <= bindparam("now"),
    )
    .values(lease_owner=bindparam("owner"), lease_until=bindparam("until"))
)
_RELEASE = (
    update(TABLE)
    .where(TABLE.c.key_hash == bindparam("entry"), TABLE.c.lease_owner == bindparam("owner"))
    .values(lease_owner="", lease_until=0.0)
)


def _upserts(dialect: str) -> tuple[Any, Any]:
    """(claim, store): INSERT ... ON CONFLICT (key_hash) DO NOTHING / DO UPDATE."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    claim = (  # RETURNING: psycopg reports no rowcount for ON CONFLICT DO NOTHING
        insert(TABLE)
        .on_conflict_do_nothing(index_elements=[TABLE.c.key_hash])
        .returning(TABLE.c.key_hash)
    )
    stored = insert(TABLE)
    columns = ("user_hash", "grant_hash", "token_hash", "sealed", "good_until")
    store = stored.on_conflict_do_update(
        index_elements=[TABLE.c.key_hash],
        set_={name: stored.excluded[name] for name in columns}
        | {"lease_owner": "", "lease_until": 0.0},
    )
    return claim, store


class DatabaseTokenCache:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        clock: Callable[[], float] = time.time,
        wait_seconds: float = WAIT_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.clock = clock
        self.wait_seconds = wait_seconds
        self.lease_seconds = lease_seconds
        self.claim_row, self.store_row = _upserts("sqlite" if db.is_sqlite else "postgresql")

    def lookup(self, session: Session, key: CacheKey) -> UpstreamToken | None:
        entry = digest(self.keyring, "entry", *key)
        row = (
            session.connection()
            .execute(_LOOKUP, {"key_hash": entry, "tenant_id": key.tenant_id})
            .first()
        )
        if row is None or row.sealed is None:
            return None
        now = self.clock()
        return None if now >= row.good_until else unseal(self.keyring, entry, row.sealed, now)

    def flight(self, key: CacheKey) -> DatabaseFlight:
        return DatabaseFlight(self, key)

    def _purge(self, session: Session, statement: Delete) -> int:
        return session.connection().execute(statement).rowcount or 0

    def purge_users(self, session: Session, tenant_id: int, subjects: Sequence[str]) -> int:
        hashes = [digest(self.keyring, "user", tenant_id, subject) for subject in subjects]
        return sum(
            self._purge(
                session,
                delete(TABLE).where(
                    TABLE.c.tenant_id == tenant_id,
                    TABLE.c.user_hash.in_(hashes[start : start + PURGE_CHUNK]),
                ),
            )
            for start in range(0, len(hashes), PURGE_CHUNK)
        )

    def purge_grant(
        self, session: Session, tenant_id: int, client_id: str, integration: str
    ) -> int:
        grant = digest(self.keyring, "grant", tenant_id, client_id, integration)
        return self._purge(
            session,
            delete(TABLE).where(TABLE.c.tenant_id == tenant_id, TABLE.c.grant_hash == grant),
        )

    def purge_token(self, session: Session, tenant_id: int, access_token: str) -> int:
        token = digest(self.keyring, "token", access_token)
        return self._purge(
            session,
            delete(TABLE).where(TABLE.c.tenant_id == tenant_id, TABLE.c.token_hash == token),
        )


class DatabaseFlight:
    """A turn at a missing key: ``token`` is the holder's (waited for), or ``None`` when
    this caller holds the lease (or waited long enough) and must obtain and ``store``."""

    def __init__(self, cache: DatabaseTokenCache, key: CacheKey) -> None:
        self.cache = cache
        self.key = key
        self.digests = Digests.of(cache.keyring, key)
        self.owner = ""
        self.stored = False
        self.token: UpstreamToken | None = None

    def __enter__(self) -> Self:
        owner = secrets.token_hex(16)
        deadline = time.monotonic() + self.cache.wait_seconds
        claimable = True
        while True:
            if claimable and self._claim(owner):
                self.owner = owner
                return self
            with self.cache.db.read() as session:
                row = (
                    session.connection()
                    .execute(
                        _LOOKUP, {"key_hash": self.digests.entry, "tenant_id": self.key.tenant_id}
                    )
                    .first()
                )
            now = self.cache.clock()
            if row is not None and row.sealed is not None and now < row.good_until:
                # the holder's token; one that does not open (another deployment key) is a
                # miss, obtained without the lease and overwritten by this caller's store
                self.token = unseal(self.cache.keyring, self.digests.entry, row.sealed, now)
                return self
            claimable = row is None or row.lease_until <= now
            if time.monotonic() >= deadline:
                return self  # waited long enough: obtain without the lease
            if not claimable:
                time.sleep(POLL_SECONDS)

    def _claim(self, owner: str) -> bool:
        now = self.cache.clock()
        until = now + self.cache.lease_seconds
        with self.cache.db.transaction() as session:
            connection = session.connection()
            inserted = connection.execute(
                self.cache.claim_row,
                {
                    "key_hash": self.digests.entry,
                    "tenant_id": self.key.tenant_id,
                    "user_hash": self.digests.user,
                    "grant_hash": self.digests.grant,
                    "token_hash": "",
                    "sealed": None,
                    "good_until": 0.0,
                    "lease_owner": owner,
                    "lease_until": until,
                },
            )
            if inserted.first() is not None:
                return True
            taken = connection.execute(
                _TAKE_OVER,
                {"entry": self.digests.entry, "now": now, "owner": owner, "until": until},
            )
            return taken.rowcount == 1

    def store(self, session: Session, token: UpstreamToken) -> None:
        cache = self.cache
        until = good_until(token, cache.clock())
        if until <= cache.clock():
            return
        session.connection().execute(
            cache.store_row,
            {
                "key_hash": self.digests.entry,
                "tenant_id": self.key.tenant_id,
                "user_hash": self.digests.user,
                "grant_hash": self.digests.grant,
                "token_hash": digest(cache.keyring, "token", token.access_token),
                "sealed": seal(cache.keyring, self.digests.entry, token, until),
                "good_until": until,
                "lease_owner": "",
                "lease_until": 0.0,
            },
        )
        self.stored = True

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.owner or (self.stored and kind is None):
            return
        try:  # the next caller need not wait for the lease to end
            with self.cache.db.transaction() as session:
                session.connection().execute(
                    _RELEASE, {"entry": self.digests.entry, "owner": self.owner}
                )
        except (DomainError, SQLAlchemyError) as error:
            log.warning("token cache: lease not released (%s)", type(error).__name__)
