"""The upstream circuit breaker and negative cache in Redis, shared by every instance.

Why: with several instances, an in-process breaker lets each one hammer a down upstream until
it has seen its own N failures; here they count together, and one probe goes out per
half-open period for the whole deployment.

Key names are keyed hashes (``Keyring.hash_token``): Redis never sees a tenant, integration or
user id in clear. The breaker is a hash ``{failures, open_until}`` (wall-clock seconds) plus a
``SET NX PX`` probe key; the negative cache is plain keys with a TTL. Both are caches: on a
Redis error (short socket timeouts, ``app.shared_redis.connect``) a read answers "no
entry / closed", a write is skipped, and a warning without ids is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from app.crypto import Keyring

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "idbridge:upstream:"


class _Keys:
    def __init__(self, client: redis.Redis, keyring: Keyring, prefix: str) -> None:
        self.redis = client
        self.keyring = keyring
        self.prefix = prefix

    def name(self, kind: str, value: str) -> str:
        return f"{self.prefix}{kind}:{self.keyring.hash_token(kind + chr(31) + value)}"


def _bypassed(what: str, error: Exception) -> None:
    log.warning("upstream %s: Redis unavailable (%s), bypassed", what, type(error).__name__)


class RedisBreaker(_Keys):
    def __init__(
        self,
        client: redis.Redis,
        keyring: Keyring,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client, keyring, prefix)
        self.clock = clock

    def acquire(self, scope: str, failures: int, cooldown: float) -> float:
        try:
            count, open_until = self.redis.hmget(self.name("b", scope), "failures", "open_until")
            if count is None or int(count) < failures:
                return 0.0
            now = self.clock()
            if now < float(open_until or 0):
                return float(open_until) - now
            if self.redis.set(self.name("p", scope), "1", nx=True, px=int(cooldown * 1000)):
                return 0.0
            return cooldown
        except redis.RedisError as error:
            _bypassed("breaker", error)
            return 0.0

    def failure(self, scope: str, failures: int, cooldown: float) -> None:
        key = self.name("b", scope)
        try:
            count = self.redis.hincrby(key, "failures", 1)
            pipe = self.redis.pipeline()
            if count >= failures:
                pipe.hset(key, "open_until", str(self.clock() + cooldown))
            pipe.expire(key, int(cooldown) + 3600)
            pipe.delete(self.name("p", scope))
            pipe.execute()
        except redis.RedisError as error:
            _bypassed("breaker", error)

    def success(self, scope: str) -> None:
        try:
            self.redis.delete(self.name("b", scope), self.name("p", scope))
        except redis.RedisError as error:
            _bypassed("breaker", error)


class RedisNegativeCache(_Keys):
    def __init__(self, client: redis.Redis, keyring: Keyring, prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__(client, keyring, prefix)

    def contains(self, key: str) -> bool:
        try:
            return bool(self.redis.exists(self.name("n", key)))
        except redis.RedisError as error:
            _bypassed("negative cache", error)
            return False

    def add(self, key: str, seconds: float) -> None:
        try:
            self.redis.set(self.name("n", key), "1", px=max(1, int(seconds * 1000)))
        except redis.RedisError as error:
            _bypassed("negative cache", error)
