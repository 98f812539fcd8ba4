"""The upstream-token cache in Redis, shared by every instance (IDBRIDGE_REDIS_URL).

Why: with more than one instance, an in-process cache would call the upstream once per process
and, worse, a purge on one process would leave the token cached on the others. Here one Redis
holds the entries, so a hit, a single flight and a purge are seen by all instances.

- Values are sealed (``Keyring.seal``, bound to the entry's key) and key names are keyed hashes
  of the ``CacheKey`` fields: Redis never sees a token, a user id or a client id in clear.
- An entry's PX TTL is the token's expiry minus the in-process cache's margin.
- Index sets per (tenant, user), per (tenant, client, integration) and per token hash let
  ``purge_user``, ``purge_grant`` and ``purge_token`` find the entries; members are removed
  with SREM (never the whole set), so an entry added during a purge stays findable.
- Single flight across processes: ``SET lock NX PX``; the others poll for the value for a
  bounded time, then obtain themselves. Only the holder releases its lock (compared in Lua).
- Short socket timeouts (``IDBRIDGE_REDIS_TIMEOUT``): a down or hung Redis costs at most that;
  reads and writes then bypass the cache (obtain directly, cache nothing, log a warning
  without secrets). A purge that fails raises ``StoreUnavailable`` (503): a revocation never
  claims success while a cached token could survive it.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable

import redis

from app.crypto import Keyring, SecretUnreadable
from app.errors import StoreUnavailable
from app.shared_redis import connect
from app.token_cache import CacheKey, good_until
from app.upstream import UpstreamToken

log = logging.getLogger(__name__)

CONTEXT = "token-cache"
DEFAULT_PREFIX = "idbridge:token-cache:"
LOCK_MS = 10_000
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.05

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
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, keyring: Keyring, **kwargs: object) -> RedisTokenCache:
        return cls(connect(url), keyring, **kwargs)  # type: ignore[arg-type]

    # key names: keyed hashes only
    def _hash(self, *fields: object) -> str:
        return self.keyring.hash_token("\x1f".join(str(field) for field in fields))

    def _entry(self, digest: str) -> str:
        return f"{self.prefix}e:{digest}"

    def _user_index(self, tenant_id: int, subject: str) -> str:
        return f"{self.prefix}u:{self._hash('user', tenant_id, subject)}"

    def _grant_index(self, tenant_id: int, client_id: str, integration: str) -> str:
        return f"{self.prefix}g:{self._hash('grant', tenant_id, client_id, integration)}"

    def _token_index(self, access_token: str) -> str:
        return f"{self.prefix}t:{self._hash('token', access_token)}"

    def _read(self, digest: str) -> UpstreamToken | None:
        sealed = self.redis.get(self._entry(digest))
        if sealed is None:
            return None
        try:
            data = json.loads(self.keyring.open(sealed, f"{CONTEXT}:{digest}"))
        except (SecretUnreadable, ValueError):
            return None  # another key or a damaged value: a miss, never an error
        if self.clock() >= data["good_until"]:
            return None
        return UpstreamToken(
            data["access_token"],
            data["expires_at"],
            data["issued_token_type"],
            data["token_type"],
            tuple((name, value) for name, value in data.get("extra", [])),
        )

    def _store(self, key: CacheKey, digest: str, token: UpstreamToken) -> None:
        until = good_until(token, self.clock())
        ttl_ms = int((until - self.clock()) * 1000)
        if ttl_ms <= 0:
            return
        value = json.dumps(
            {
                "access_token": token.access_token,
                "expires_at": token.expires_at,
                "issued_token_type": token.issued_token_type,
                "token_type": token.token_type,
                "extra": token.extra,
                "good_until": until,
            }
        )
        indexes = (
            self._user_index(key.tenant_id, key.subject),
            self._grant_index(key.tenant_id, key.client_id, key.integration),
            self._token_index(token.access_token),
        )
        pipe = self.redis.pipeline()
        pipe.set(self._entry(digest), self.keyring.seal(value, f"{CONTEXT}:{digest}"), px=ttl_ms)
        for index in indexes:
            pipe.sadd(index, digest)
            pipe.pexpire(index, ttl_ms, nx=True)
            pipe.pexpire(index, ttl_ms, gt=True)
        pipe.execute()

    def get_or_obtain(
        self, key: CacheKey, obtain: Callable[[], UpstreamToken]
    ) -> tuple[UpstreamToken, bool]:
        """The cached token for ``key``, or a new one from ``obtain`` (once per key across
        processes while the lock holds); returns the token and whether it came from the cache."""
        digest = self._hash("entry", *key)
        lock_key = f"{self.prefix}l:{digest}"
        lock = secrets.token_hex(16)
        deadline = time.monotonic() + self.wait_seconds
        try:
            while True:
                token = self._read(digest)
                if token is not None:
                    return token, True
                if self.redis.set(lock_key, lock, nx=True, px=LOCK_MS):
                    token = self._read(digest)  # stored by the holder we just succeeded?
                    if token is not None:
                        self._release(keys=[lock_key], args=[lock])
                        return token, True
                    break
                if time.monotonic() >= deadline:
                    lock = ""  # waited long enough: obtain without the lock
                    break
                time.sleep(POLL_SECONDS)
        except redis.RedisError as error:
            return self._bypass(error, obtain)
        try:
            token = obtain()
            try:
                self._store(key, digest, token)  # before the release: waiters then find it
            except redis.RedisError as error:
                log.warning("token cache: Redis unavailable (%s), not cached", type(error).__name__)
        finally:
            if lock:
                try:
                    self._release(keys=[lock_key], args=[lock])
                except redis.RedisError as error:
                    log.warning("token cache: Redis unavailable (%s)", type(error).__name__)
        return token, False

    @staticmethod
    def _bypass(
        error: Exception, obtain: Callable[[], UpstreamToken]
    ) -> tuple[UpstreamToken, bool]:
        log.warning("token cache: Redis unavailable (%s), bypassing", type(error).__name__)
        return obtain(), False

    def _purge(self, index: str) -> int:
        try:
            digests = list(self.redis.smembers(index))
            if not digests:
                return 0
            pipe = self.redis.pipeline()
            pipe.delete(*(self._entry(digest) for digest in digests))
            pipe.srem(index, *digests)
            deleted, _ = pipe.execute()
            return int(deleted)
        except redis.RedisError as error:
            log.warning("token cache: purge failed, Redis unavailable (%s)", type(error).__name__)
            raise StoreUnavailable("the token cache cannot be purged now") from None

    def purge_token(self, access_token: str) -> int:
        """Drop the entry holding this token (RFC 7009 revocation)."""
        return self._purge(self._token_index(access_token))

    def purge_user(self, tenant_id: int, subject: str) -> int:
        return self._purge(self._user_index(tenant_id, subject))

    def purge_grant(self, tenant_id: int, client_id: str, integration: str) -> int:
        return self._purge(self._grant_index(tenant_id, client_id, integration))
