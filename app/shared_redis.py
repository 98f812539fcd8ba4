"""The shared checks in Redis (``IDBRIDGE_REDIS_URL``): one Redis seen by every instance.

- Key names are keyed hashes (``Keyring.hash_token``) of what they stand for: Redis never
  holds a user id, a session id or a ``jti`` in clear.
- Every call has the socket timeouts of ``IDBRIDGE_REDIS_TIMEOUT`` and no retries; a failure
  raises ``StoreUnavailable`` (503 with ``Retry-After``): these checks guard security, so they
  fail closed, and no request waits longer than the timeout per call.
- The database stays the source of truth: ``jti`` uses and revocations are written there too,
  in the caller's transaction, so losing Redis's data (a restart, an eviction) loses nothing.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app import revocation, tenancy
from app.crypto import Keyring
from app.errors import StoreUnavailable
from app.idempotency import WAIT
from app.models import SessionRevocation
from app.replay import DatabaseReplayStore, Use

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 0.5  # IDBRIDGE_REDIS_TIMEOUT's default
PREFIX = "idbridge:"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
POLL_SECONDS = 0.05
CLAIM_MS = 60_000  # a delivery's claim outlives any request; a dead holder's expires

# Compare-and-delete: only the holder releases its claim.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Raise each "not before" to at least the given time (never lower one), with its expiry (the
# value ARGV[2i-2], its expiry in epoch ms ARGV[2i-1]), then set the marker (ARGV[1]) when
# asked: a reload and the revocations racing it can only add.
_RAISE = """
for i, key in ipairs(KEYS) do
  if i > 1 then
    local current = redis.call('GET', key)
    if not current or tonumber(current) < tonumber(ARGV[2 * i - 2]) then
      redis.call('SET', key, ARGV[2 * i - 2], 'PXAT', ARGV[2 * i - 1])
    end
  end
end
if ARGV[1] == '1' then redis.call('SET', KEYS[1], '1') end
return 1
"""
# The "not before" times of KEYS[2..], or nil when the marker KEYS[1] is gone (Redis lost its
# data since the last reload): checked in the same step, so a loss cannot pass unseen.
_READ = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if #KEYS == 1 then return {} end
return redis.call('MGET', unpack(KEYS, 2))
"""


def connect(url: str, timeout: float = DEFAULT_TIMEOUT) -> redis.Redis:
    """A client that fails fast: ``timeout`` to connect, read and write, no retries."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        decode_responses=True,
    )


def _unavailable(what: str, error: redis.RedisError) -> StoreUnavailable:
    log.warning("%s: Redis unavailable (%s)", what, type(error).__name__)
    return StoreUnavailable(f"{what} cannot be checked now")


class _Keys:
    def __init__(self, keyring: Keyring, prefix: str) -> None:
        self.keyring = keyring
        self.prefix = prefix

    def name(self, kind: str, *fields: object) -> str:
        digest = self.keyring.hash_token("\x1f".join(str(field) for field in (kind, *fields)))
        return f"{self.prefix}{kind}:{digest}"


class RedisReplayStore:
    """``SET NX`` with the token's expiry claims a ``jti`` for every instance at once; then the
    database records it (``DatabaseReplayStore``). If that transaction rolls back, the claim is
    given back: a use the database never recorded did not happen (a back-channel logout that
    failed can be retried; a client assertion is recorded in a transaction of its own that
    commits at authentication, ``app.assertions.authenticate``)."""

    def __init__(self, client: redis.Redis, keyring: Keyring, prefix: str = PREFIX) -> None:
        self.redis = client
        self.keys = _Keys(keyring, prefix)
        self.database = DatabaseReplayStore()

    def first_use(self, session: Session, use: Use) -> bool:
        key = self.keys.name("jti", use.kind, use.tenant_id, use.client_id, use.jti)
        expires_ms = int(use.expires_at.timestamp() * 1000)
        try:
            if not self.redis.set(key, "1", nx=True, pxat=max(expires_ms, _now_ms() + 1000)):
                return False
        except redis.RedisError as error:
            raise _unavailable("token replay", error) from None

        def give_back(_session: Session) -> None:
            try:
                self.redis.delete(key)
            except redis.RedisError as error:
                log.warning(
                    "token replay: claim kept, Redis unavailable (%s)", type(error).__name__
                )

        event.listen(session, "after_rollback", give_back, once=True)
        return self.database.first_use(session, use)


class RedisNotBefore:
    """The cutoff of every (tenant, user, session) row revoked, in epoch microseconds, each key
    expiring when the database row may be swept (``app.revocation.kept_for``), plus a marker
    key set by the last full reload from the database. A read that finds the marker gone
    reloads every revocation (``SessionRevocation``) and reads again."""

    def __init__(
        self,
        client: redis.Redis,
        keyring: Keyring,
        session_max_age: timedelta,
        prefix: str = PREFIX,
    ) -> None:
        self.redis = client
        self.keys = _Keys(keyring, prefix)
        self.session_max_age = session_max_age
        self.kept_for = revocation.kept_for(session_max_age)
        self.marker = f"{prefix}not-before:loaded"
        self._raise = client.register_script(_RAISE)
        self._read = client.register_script(_READ)

    def _key(self, tenant_id: int, subject: str, session_id: str) -> str:
        return self.keys.name("not-before", tenant_id, subject, session_id)

    def _expiry_ms(self, cutoff: datetime) -> int:
        return _microseconds(cutoff + self.kept_for) // 1000

    def publish(
        self, session: Session, tenant_id: int, subject: str, session_id: str, at: datetime
    ) -> None:
        """Into Redis now, before the commit (fail closed), and again after it (a reload racing
        this transaction could not see the row yet)."""
        keys = [self.marker, self._key(tenant_id, subject, session_id)]
        values = ["0", _microseconds(at), self._expiry_ms(at)]
        try:
            self._raise(keys=keys, args=values)
        except redis.RedisError as error:
            raise _unavailable("revocation", error) from None

        def again(_session: Session) -> None:
            try:
                self._raise(keys=keys, args=values)
            except redis.RedisError as error:
                log.warning("revocation: Redis unavailable after commit (%s)", type(error).__name__)

        event.listen(session, "after_commit", again, once=True)

    def cutoffs(
        self, session: Session, tenant_id: int, pairs: list[tuple[str, str]]
    ) -> list[datetime]:
        keys = [self.marker, *(self._key(tenant_id, subject, sid) for subject, sid in pairs)]
        try:
            found = self._read(keys=keys)
            if found is None:
                self.reload(session)
                found = self._read(keys=keys)
        except redis.RedisError as error:
            raise _unavailable("revocation", error) from None
        if found is None:
            raise StoreUnavailable("revocations are being reloaded")
        return [EPOCH + timedelta(microseconds=int(value)) for value in found if value is not None]

    def reload(self, session: Session) -> int:
        """Copy every revocation of every tenant from the database, then set the marker, in one
        Redis transaction (MULTI): the marker never stands for data that is not there."""
        table = SessionRevocation.__table__
        # every tenant's rows, whatever tenant the session answers: the mirror holds them all
        rows = tenancy.unguarded_connection(session).execute(
            select(table.c.tenant_id, table.c.subject, table.c.session_id, table.c.not_before)
        )
        keys, values = [self.marker], ["1"]
        now_ms = _now_ms()
        for tenant_id, subject, session_id, not_before in rows:
            expiry_ms = self._expiry_ms(not_before)
            if expiry_ms > now_ms:  # else due to be swept: it refuses no valid token
                keys.append(self._key(tenant_id, subject, session_id))
                values += [_microseconds(not_before), expiry_ms]
        pipe = self.redis.pipeline(transaction=True)
        self._raise(keys=keys, args=values, client=pipe)
        pipe.execute()
        log.info("revocation: %d reloaded into Redis", len(keys) - 1)
        return len(keys) - 1


class RedisDeliveryClaims:
    """``SET NX PX`` claims a webhook id for every instance; the others poll for it (bounded by
    ``WAIT``). A holder that dies leaves a claim that expires after ``CLAIM_MS``."""

    def __init__(
        self, client: redis.Redis, keyring: Keyring, prefix: str = PREFIX, wait: float = WAIT
    ) -> None:
        self.redis = client
        self.keys = _Keys(keyring, prefix)
        self.wait = wait
        self._release = client.register_script(_RELEASE)

    @contextmanager
    def hold(self, slug: str, key: str) -> Iterator[None]:
        name = self.keys.name("delivery", slug, key)
        token = secrets.token_hex(16)
        deadline = time.monotonic() + self.wait
        try:
            while not self.redis.set(name, token, nx=True, px=CLAIM_MS):
                if time.monotonic() >= deadline:
                    raise StoreUnavailable("a delivery with this id is in progress")
                time.sleep(POLL_SECONDS)
        except redis.RedisError as error:
            raise _unavailable("webhook idempotency", error) from None
        try:
            yield
        finally:
            try:
                self._release(keys=[name], args=[token])
            except redis.RedisError as error:
                log.warning("webhook idempotency: claim left to expire (%s)", type(error).__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _microseconds(value: datetime) -> int:
    """Exact microseconds since the epoch (SQLite hands back naive UTC)."""
    return ((value if value.tzinfo else value.replace(tzinfo=UTC)) - EPOCH) // timedelta(
        microseconds=1
    )
