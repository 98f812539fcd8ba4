"""What stands between an exchange and an upstream authorization server: a per-integration
circuit breaker and a brief negative cache of "no such user" answers.

Why: an upstream that is down should cost the broker one fast 503, not a timeout per request
(the breaker); and a user the upstream does not know should not cost an upstream call per retry
(the negative cache). Both are caches of the upstream's recent answers, never a security check:
with Redis unreachable they are bypassed (``app.upstream_guard_redis``), never a reason to hang.

Breaker (per tenant and integration): closed -> open after ``failures`` consecutive failures
(timeouts, connection errors, 5xx, unusable answers) -> after ``cooldown`` seconds half-open,
where exactly one caller probes the upstream: success closes it, failure opens it again. An
upstream that answers, even with a refusal, is up.

Both stores sit behind small ``typing.Protocol``s with an in-process implementation here and a
Redis one (``app.upstream_guard_redis``, chosen when ``IDBRIDGE_REDIS_URL`` is set, so all
instances share one breaker per integration).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from flask import Flask, current_app

from app import runtime
from app.oauth_errors import OAuthError, TemporarilyUnavailable, UserNotProvisioned
from app.upstream import UpstreamHandler, UpstreamRequest, UpstreamToken, UpstreamUnavailable

EXTENSION = "idbridge.upstream_guard"
DEFAULT_FAILURES = 5
DEFAULT_COOLDOWN = 30.0
DEFAULT_NEGATIVE_SECONDS = 60.0
MAX_ENTRIES = 100_000


class Breaker(Protocol):
    def acquire(self, scope: str, failures: int, cooldown: float) -> float:
        """0 when a call may go out now (closed, or this caller holds the half-open probe);
        else the seconds until one may."""
        ...

    def failure(self, scope: str, failures: int, cooldown: float) -> None: ...

    def success(self, scope: str) -> None: ...


class NegativeCache(Protocol):
    def contains(self, key: str) -> bool: ...

    def add(self, key: str, seconds: float) -> None: ...


@dataclass
class _State:
    failures: int = 0
    open_until: float = 0.0
    probe_until: float = 0.0  # a probe that never reports back frees the slot after this


class MemoryBreaker:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def acquire(self, scope: str, failures: int, cooldown: float) -> float:
        with self._lock:
            state = self._states.get(scope)
            if state is None or state.failures < failures:
                return 0.0
            now = self.clock()
            if now < state.open_until:
                return state.open_until - now
            if now < state.probe_until:
                return state.probe_until - now
            state.probe_until = now + cooldown
            return 0.0

    def failure(self, scope: str, failures: int, cooldown: float) -> None:
        with self._lock:
            if len(self._states) >= MAX_ENTRIES:
                self._states.clear()
            state = self._states.setdefault(scope, _State())
            state.failures += 1
            state.probe_until = 0.0
            if state.failures >= failures:
                state.open_until = self.clock() + cooldown

    def success(self, scope: str) -> None:
        with self._lock:
            self._states.pop(scope, None)


class MemoryNegativeCache:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def contains(self, key: str) -> bool:
        with self._lock:
            until = self._until.get(key)
            if until is None:
                return False
            if self.clock() >= until:
                del self._until[key]
                return False
            return True

    def add(self, key: str, seconds: float) -> None:
        with self._lock:
            if len(self._until) >= MAX_ENTRIES:
                self._until.clear()
            self._until[key] = self.clock() + seconds


@dataclass(frozen=True)
class UpstreamGuard:
    breaker: Breaker
    negative: NegativeCache

    def call(
        self, tenant_id: int, handler: UpstreamHandler, request: UpstreamRequest
    ) -> UpstreamToken:
        """``handler.exchange(request)`` behind the breaker and the negative cache; handlers
        that mint locally (``remote`` false) are called directly. Nothing failed is cached
        here or by the caller: every failure leaves as an exception."""
        if not handler.remote:
            return handler.exchange(request)
        target = request.target
        settings = target.settings
        failures = int(settings.get("breaker_failures", DEFAULT_FAILURES))
        cooldown = float(settings.get("breaker_cooldown", DEFAULT_COOLDOWN))
        scope = f"{tenant_id}\x1f{target.name}"
        negative_key = f"{scope}\x1f{request.upstream_subject}"
        if self.negative.contains(negative_key):
            raise UserNotProvisioned(target.name)
        wait = self.breaker.acquire(scope, failures, cooldown)
        if wait > 0:
            refusal = TemporarilyUnavailable(
                f"integration {target.name!r} is unavailable (circuit open)"
            )
            refusal.retry_after = max(1, int(wait + 0.999))
            raise refusal
        try:
            token = handler.exchange(request)
        except UpstreamUnavailable as exc:
            self.breaker.failure(scope, failures, cooldown)
            refusal = TemporarilyUnavailable(f"integration {target.name!r} is unavailable: {exc}")
            refusal.retry_after = max(1, min(int(cooldown), TemporarilyUnavailable.retry_after))
            raise refusal from None
        except UserNotProvisioned:
            self.breaker.success(scope)
            seconds = float(settings.get("negative_cache_seconds", DEFAULT_NEGATIVE_SECONDS))
            if seconds > 0:
                self.negative.add(negative_key, seconds)
            raise
        except OAuthError:
            self.breaker.success(scope)  # it answered: up, but it said no
            raise
        self.breaker.success(scope)
        return token


def init_app(flask_app: Flask) -> UpstreamGuard:
    """Redis when ``redis_url`` is set (shared by all instances), else in-process."""
    rt = runtime.of(flask_app)
    guard: UpstreamGuard
    if rt.settings.redis_url:
        from app import shared
        from app.upstream_guard_redis import RedisBreaker, RedisNegativeCache

        client = shared.of(flask_app).redis
        guard = UpstreamGuard(
            RedisBreaker(client, rt.keyring), RedisNegativeCache(client, rt.keyring)
        )
    else:
        guard = UpstreamGuard(MemoryBreaker(), MemoryNegativeCache())
    flask_app.extensions[EXTENSION] = guard
    return guard


def of_current() -> UpstreamGuard:
    """The guard of the app handling this request."""
    return current_app.extensions[EXTENSION]
