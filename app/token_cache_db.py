"""The upstream-token cache as sealed rows of the deployment's database (the default).

Why the database and not each process's memory: ``idbridge serve`` runs several workers (and a
deployment several instances); a cache per process served a token revoked through another
worker, gave two answers in a row two different tokens and called the upstream once per
process. Every worker already shares the database, so here one table (``CachedToken``) is the
cache of the whole deployment: a purge is a DELETE in the revoking transaction (seen by every
worker as it commits, on any path: request, CLI, job), and single flight is a lease row.

- The hot path (``lookup``) reads one row by its unique key inside the exchange's own read
  transaction: one prebuilt statement of two columns, no entity loaded; then it opens the
  sealed value. Every statement here goes through the tenant guard (``app.tenancy``): the
  table is tenant-owned, and each session is scoped to the key's tenant.
- Single flight (``flight``): a caller missing a key claims it in a short committed
  transaction (insert the row if absent, or take over one whose lease ended and whose value is
  stale: the guard allows no upsert that updates, so these are two statements);
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

from sqlalchemy import Delete, Update, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app import tenancy
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

PURGE_CHUNK = 500  # hashes per DELETE of a bulk purge (a mapping import)
QUIET = {"synchronize_session": False}  # no loaded rows to keep in step: none are loaded

# Built once, bound per call: building a statement costs more than running it (bench/). The
# tenant guard adds ``tenant_id = :tenant`` to each.
_LOOKUP = select(CachedToken.sealed, CachedToken.good_until).where(
    CachedToken.key_hash == bindparam("entry")
)
_PEEK = select(CachedToken.sealed, CachedToken.good_until, CachedToken.lease_until).where(
    CachedToken.key_hash == bindparam("entry")
)
_TAKE_OVER = (
    update(CachedToken)
    .where(
        CachedToken.key_hash == bindparam("entry"),
        CachedToken.lease_until <= bindparam("now"),
        CachedToken.good_until <= bindparam("now"),
    )
    .values(lease_owner=bindparam("owner"), lease_until=bindparam("until"))
    .execution_options(**QUIET)
)
_RELEASE = (
    update(CachedToken)
    .where(
        CachedToken.key_hash == bindparam("entry"), CachedToken.lease_owner == bindparam("owner")
    )
    .values(lease_owner="", lease_until=0.0)
    .execution_options(**QUIET)
)
_STORE = (
    update(CachedToken)
    .where(CachedToken.key_hash == bindparam("entry"))
    .values(
        token_hash=bindparam("token"),
        sealed=bindparam("value"),
        good_until=bindparam("until"),
        lease_owner="",
        lease_until=0.0,
    )
    .execution_options(**QUIET)
)


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
        self._insert = sqlite.insert if db.is_sqlite else postgresql.insert

    def lookup(self, session: Session, key: CacheKey) -> UpstreamToken | None:
        entry = digest(self.keyring, "entry", *key)
        row = session.execute(_LOOKUP, {"entry": entry}).first()
        if row is None or row.sealed is None:
            return None
        now = self.clock()
        return None if now >= row.good_until else unseal(self.keyring, entry, row.sealed, now)

    def flight(self, key: CacheKey) -> DatabaseFlight:
        return DatabaseFlight(self, key)

    def insert(self, session: Session, digests: Digests, key: CacheKey, **values: Any) -> bool:
        """Insert the key's row unless it exists (the guard allows no upsert that updates);
        whether it was inserted."""
        statement = (
            self._insert(CachedToken)
            .values(
                key_hash=digests.entry,
                tenant_id=key.tenant_id,
                user_hash=digests.user,
                grant_hash=digests.grant,
                **values,
            )
            .on_conflict_do_nothing(index_elements=[CachedToken.tenant_id, CachedToken.key_hash])
            .returning(CachedToken.key_hash)  # psycopg reports no rowcount for DO NOTHING
        )
        return session.execute(statement).first() is not None

    @staticmethod
    def changed(session: Session, statement: Update | Delete, values: dict[str, Any]) -> int:
        return session.execute(statement, values).rowcount or 0  # type: ignore[attr-defined]

    def purge_users(self, session: Session, tenant_id: int, subjects: Sequence[str]) -> int:
        hashes = [digest(self.keyring, "user", tenant_id, subject) for subject in subjects]
        return sum(
            self.changed(
                session,
                delete(CachedToken)
                .where(
                    CachedToken.tenant_id == tenant_id,
                    CachedToken.user_hash.in_(hashes[start : start + PURGE_CHUNK]),
                )
                .execution_options(**QUIET),
                {},
            )
            for start in range(0, len(hashes), PURGE_CHUNK)
        )

    def purge_grant(
        self, session: Session, tenant_id: int, client_id: str, integration: str
    ) -> int:
        grant = digest(self.keyring, "grant", tenant_id, client_id, integration)
        statement = delete(CachedToken).where(
            CachedToken.tenant_id == tenant_id, CachedToken.grant_hash == grant
        )
        return self.changed(session, statement.execution_options(**QUIET), {})

    def purge_token(self, session: Session, tenant_id: int, access_token: str) -> int:
        token = digest(self.keyring, "token", access_token)
        statement = delete(CachedToken).where(
            CachedToken.tenant_id == tenant_id, CachedToken.token_hash == token
        )
        return self.changed(session, statement.execution_options(**QUIET), {})


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
                tenancy.scope_id(session, self.key.tenant_id)
                row = session.execute(_PEEK, {"entry": self.digests.entry}).first()
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
        cache = self.cache
        now = cache.clock()
        until = now + cache.lease_seconds
        with cache.db.transaction() as session:
            tenancy.scope_id(session, self.key.tenant_id)
            lease = {"lease_owner": owner, "lease_until": until}
            if cache.insert(session, self.digests, self.key, **lease):
                return True
            taken = {"entry": self.digests.entry, "now": now, "owner": owner, "until": until}
            return cache.changed(session, _TAKE_OVER, taken) == 1

    def store(self, session: Session, token: UpstreamToken) -> None:
        """In the caller's transaction (scoped to the key's tenant by the exchange)."""
        cache = self.cache
        until = good_until(token, cache.clock())
        if until <= cache.clock():
            return
        values = {
            "token_hash": digest(cache.keyring, "token", token.access_token),
            "sealed": seal(cache.keyring, self.digests.entry, token, until),
            "good_until": until,
        }
        if not cache.insert(session, self.digests, self.key, **values):
            stored = {
                "entry": self.digests.entry,
                "token": values["token_hash"],
                "value": values["sealed"],
                "until": until,
            }
            cache.changed(session, _STORE, stored)
        self.stored = True

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.owner or (self.stored and kind is None):
            return
        try:  # the next caller need not wait for the lease to end
            with self.cache.db.transaction() as session:
                tenancy.scope_id(session, self.key.tenant_id)
                released = {"entry": self.digests.entry, "owner": self.owner}
                self.cache.changed(session, _RELEASE, released)
        except (DomainError, SQLAlchemyError) as error:
            log.warning("token cache: lease not released (%s)", type(error).__name__)
