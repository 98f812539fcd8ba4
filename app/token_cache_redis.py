"""The upstream-token cache in Redis (``IDBRIDGE_REDIS_URL``), shared by every instance.

The same promises as the database cache (``app.token_cache_db``), kept where Redis answers
faster than the database; how a revocation and a racing store serialise is in
``app.token_cache`` and holds here too (the store runs inside the exchange's re-check
transaction, under the same locks as the purges).

- Values are sealed (``app.token_cache.seal``, bound to the entry's key) and key names are
  keyed hashes of the ``CacheKey`` fields: Redis never sees a token, a user id or a client id in
  clear. An entry's PX TTL is the token's expiry minus the margin.
- Index sets per (tenant, user), per (tenant, client, integration) and per token hash let the
  purges find the entries; members are removed with SREM (never the whole set), so an entry
  added during a purge stays findable.
- Single flight across processes: ``SET lock NX PX``; the others poll for the value for a
  bounded time, then obtain themselves. Only the holder releases its lock (compared in Lua).
- Short socket timeouts (``IDBRIDGE_REDIS_TIMEOUT``): a down or hung Redis costs at most that;
  reads and writes then bypass the cache (obtain directly, cache nothing, log a warning
  without secrets). A purge that fails raises ``StoreUnavailable`` (503) and so rolls the
  revocation back: it never claims success while a cached token could survive it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import redis
from sqlalchemy.orm import Session

from app.crypto import Keyring
from app.errors import StoreUnavailable
from app.shared_redis import connect
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

DEFAULT_PREFIX = "idbridge:token-cache:"
PURGE_CHUNK = 500  # index sets per round trip of a bulk purge (a mapping import)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisTokenCache:
    def __init__(
        self,
        client: redis.Redis,
        keyring: Keyring,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self.redis = client
        self.keyring = keyring
        self.prefix = prefix
        self.clock = clock
        self.wait_seconds = wait_seconds
        self.release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, keyring: Keyring, **kwargs: object) -> RedisTokenCache:
        return cls(connect(url), keyring, **kwargs)  # type: ignore[arg-type]

    # key names: keyed hashes only
    def entry_key(self, entry: str) -> str:
        return f"{self.prefix}e:{entry}"

    def lock_key(self, entry: str) -> str:
        return f"{self.prefix}l:{entry}"

    def _user_index(self, tenant_id: int, subject: str) -> str:
        return f"{self.prefix}u:{digest(self.keyring, 'user', tenant_id, subject)}"

    def _grant_index(self, tenant_id: int, client_id: str, integration: str) -> str:
        grant = digest(self.keyring, "grant", tenant_id, client_id, integration)
        return f"{self.prefix}g:{grant}"

    def _token_index(self, access_token: str) -> str:
        return f"{self.prefix}t:{digest(self.keyring, 'token', access_token)}"

    def read(self, entry: str) -> UpstreamToken | None:
        sealed = self.redis.get(self.entry_key(entry))
        return None if sealed is None else unseal(self.keyring, entry, sealed, self.clock())

    def lookup(self, session: Session, key: CacheKey) -> UpstreamToken | None:
        try:
            return self.read(digest(self.keyring, "entry", *key))
        except redis.RedisError as error:
            log.warning("token cache: Redis unavailable (%s), bypassing", type(error).__name__)
            return None

    def flight(self, key: CacheKey) -> RedisFlight:
        return RedisFlight(self, key)

    def store(self, key: CacheKey, entry: str, token: UpstreamToken) -> None:
        until = good_until(token, self.clock())
        ttl_ms = int((until - self.clock()) * 1000)
        if ttl_ms <= 0:
            return
        indexes = (
            self._user_index(key.tenant_id, key.subject),
            self._grant_index(key.tenant_id, key.client_id, key.integration),
            self._token_index(token.access_token),
        )
        pipe = self.redis.pipeline()
        pipe.set(self.entry_key(entry), seal(self.keyring, entry, token, until), px=ttl_ms)
        for index in indexes:
            pipe.sadd(index, entry)
            pipe.pexpire(index, ttl_ms, nx=True)
            pipe.pexpire(index, ttl_ms, gt=True)
        pipe.execute()

    def _purge(self, indexes: Sequence[str]) -> int:
        deleted = 0
        try:
            for start in range(0, len(indexes), PURGE_CHUNK):
                chunk = indexes[start : start + PURGE_CHUNK]
                reads = self.redis.pipeline(transaction=False)
                for index in chunk:
                    reads.smembers(index)
                members = reads.execute()
                entries = {entry for found in members for entry in found}
                if not entries:
                    continue
                pipe = self.redis.pipeline()
                pipe.delete(*(self.entry_key(entry) for entry in entries))
                for index, found in zip(chunk, members, strict=True):
                    if found:
                        pipe.srem(index, *found)
                deleted += int(pipe.execute()[0])
        except redis.RedisError as error:
            log.warning("token cache: purge failed, Redis unavailable (%s)", type(error).__name__)
            raise StoreUnavailable("the token cache cannot be purged now") from None
        return deleted

    def purge_users(self, session: Session, tenant_id: int, subjects: Sequence[str]) -> int:
        return self._purge([self._user_index(tenant_id, subject) for subject in subjects])

    def purge_grant(
        self, session: Session, tenant_id: int, client_id: str, integration: str
    ) -> int:
        return self._purge([self._grant_index(tenant_id, client_id, integration)])

    def purge_token(self, session: Session, tenant_id: int, access_token: str) -> int:
        """RFC 7009 revocation (the token hash names the tenant's entry only: tokens differ)."""
        return self._purge([self._token_index(access_token)])


class RedisFlight:
    """A turn at a missing key: ``token`` is the holder's (waited for), or ``None`` when this
    caller holds the lock (or waited long enough, or Redis failed) and must obtain."""

    def __init__(self, cache: RedisTokenCache, key: CacheKey) -> None:
        self.cache = cache
        self.key = key
        self.entry = Digests.of(cache.keyring, key).entry
        self.lock = ""
        self.token: UpstreamToken | None = None

    def __enter__(self) -> Self:
        cache = self.cache
        lock = secrets.token_hex(16)
        deadline = time.monotonic() + cache.wait_seconds
        try:
            while True:
                self.token = cache.read(self.entry)
                if self.token is not None:
                    return self
                if cache.redis.set(
                    cache.lock_key(self.entry), lock, nx=True, px=int(LEASE_SECONDS * 1000)
                ):
                    self.lock = lock
                    self.token = cache.read(self.entry)  # stored by the holder just before?
                    return self
                if time.monotonic() >= deadline:
                    return self  # waited long enough: obtain without the lock
                time.sleep(POLL_SECONDS)
        except redis.RedisError as error:
            log.warning("token cache: Redis unavailable (%s), bypassing", type(error).__name__)
            return self

    def store(self, session: Session, token: UpstreamToken) -> None:
        try:  # before the release: waiters then find it
            self.cache.store(self.key, self.entry, token)
        except redis.RedisError as error:
            log.warning("token cache: Redis unavailable (%s), not cached", type(error).__name__)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.lock:
            return
        try:
            self.cache.release(keys=[self.cache.lock_key(self.entry)], args=[self.lock])
        except redis.RedisError as error:
            log.warning("token cache: Redis unavailable (%s)", type(error).__name__)
