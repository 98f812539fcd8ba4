"""Cache of upstream tokens (DOMAIN.md: Cached upstream token), in-process.

Keyed by (tenant, client, user, integration, audience, scope); an entry lives until the
token's expiry minus ``margin`` (a tenth of its lifetime, at most ``MAX_MARGIN`` seconds), so
a token handed out always has time left and never outlives what the upstream said. One
upstream call per key at a time (``get_or_obtain`` holds the key's lock while it obtains): of
concurrent requests for one key, one calls the upstream and the others get its token.

Purges (``purge_user``, ``purge_grant``) run when access ends: from ``app.revocation.revoke``
(logout, block, delete) and on grant revocation, both before the transaction commits and again
after it does, so an exchange racing with the revocation cannot leave an entry behind. The
cache lives in ``app.extensions`` (one per app, never module-level). Callers see the
``UpstreamTokenCache`` protocol: this in-process ``TokenCache`` in single-instance mode, or
``app.token_cache_redis.RedisTokenCache`` (shared, values sealed) when ``IDBRIDGE_REDIS_URL``
is set, so every instance sees the others' entries and purges.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

from flask import Flask, current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from app import runtime
from app.upstream import UpstreamToken

EXTENSION = "idbridge.token_cache"
MAX_MARGIN = 60.0
MAX_ENTRIES = 100_000


class CacheKey(NamedTuple):
    tenant_id: int
    client_id: str
    subject: str
    integration: str
    audience: str
    scope: str
    actors: str = ""  # the delegation chain: a delegated token differs by its ``act``
    # the mapped identity: a changed mapping never gets the old identity's token, on any
    # process, even before a purge reaches it
    upstream_subject: str = ""


def good_until(token: UpstreamToken, now: float) -> float:
    """When a cached ``token`` stops being handed out: its expiry minus the margin."""
    margin = min(MAX_MARGIN, max(0.0, token.expires_at - now) / 10)
    return token.expires_at - margin


class UpstreamTokenCache(Protocol):
    """What callers use, in-process or in Redis."""

    def get_or_obtain(
        self, key: CacheKey, obtain: Callable[[], UpstreamToken]
    ) -> tuple[UpstreamToken, bool]: ...

    def purge_token(self, access_token: str) -> int: ...

    def purge_user(self, tenant_id: int, subject: str) -> int: ...

    def purge_grant(self, tenant_id: int, client_id: str, integration: str) -> int: ...


class TokenCache:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._entries: dict[CacheKey, tuple[UpstreamToken, float]] = {}
        self._locks: dict[CacheKey, threading.Lock] = {}
        self._lock = threading.Lock()

    def _usable(self, key: CacheKey) -> UpstreamToken | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        token, good_until = entry
        if self.clock() >= good_until:
            self._entries.pop(key, None)
            return None
        return token

    def get_or_obtain(
        self, key: CacheKey, obtain: Callable[[], UpstreamToken]
    ) -> tuple[UpstreamToken, bool]:
        """The cached token for ``key``, or a new one from ``obtain`` (once per key at a time);
        returns the token and whether it came from the cache."""
        with self._lock:
            token = self._usable(key)
            if token is not None:
                return token, True
            key_lock = self._locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                token = self._usable(key)
                if token is not None:
                    return token, True
            token = obtain()
            until = good_until(token, self.clock())
            with self._lock:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key] = (token, until)
                self._locks.pop(key, None)
            return token, False

    def purge(self, match: Callable[[CacheKey], bool]) -> int:
        with self._lock:
            doomed = [key for key in self._entries if match(key)]
            for key in doomed:
                del self._entries[key]
            return len(doomed)

    def purge_token(self, access_token: str) -> int:
        """Drop the entry holding this token (RFC 7009 revocation)."""
        with self._lock:
            doomed = [k for k, (t, _) in self._entries.items() if t.access_token == access_token]
            for key in doomed:
                del self._entries[key]
            return len(doomed)

    def purge_user(self, tenant_id: int, subject: str) -> int:
        return self.purge(lambda key: key.tenant_id == tenant_id and key.subject == subject)

    def purge_grant(self, tenant_id: int, client_id: str, integration: str) -> int:
        return self.purge(
            lambda key: (
                key.tenant_id == tenant_id
                and key.client_id == client_id
                and key.integration == integration
            )
        )


def init_app(flask_app: Flask) -> UpstreamTokenCache:
    """Redis when ``redis_url`` is set (shared by all instances), else in-process."""
    rt = runtime.of(flask_app)
    cache: UpstreamTokenCache
    if rt.settings.redis_url:
        from app import shared
        from app.token_cache_redis import RedisTokenCache

        cache = RedisTokenCache(shared.of(flask_app).redis, rt.keyring)
    else:
        cache = TokenCache()
    flask_app.extensions[EXTENSION] = cache
    return cache


def of(flask_app: Flask) -> UpstreamTokenCache:
    return flask_app.extensions[EXTENSION]


def _current() -> UpstreamTokenCache | None:
    if not has_app_context():
        return None
    return current_app.extensions.get(EXTENSION)


def _now_and_after_commit(session: Session, purge: Callable[[UpstreamTokenCache], object]) -> None:
    cache = _current()
    if cache is None:
        return
    purge(cache)

    def again(_session: Session) -> None:
        purge(cache)

    event.listen(session, "after_commit", again, once=True)


def purge_user_on(session: Session, tenant_id: int, subject: str) -> None:
    """Drop the user's cached tokens now and again when ``session`` commits."""
    _now_and_after_commit(session, lambda cache: cache.purge_user(tenant_id, subject))


def purge_grant_on(session: Session, tenant_id: int, client_id: str, integration: str) -> None:
    """Drop the grant's cached tokens now and again when ``session`` commits."""
    _now_and_after_commit(
        session, lambda cache: cache.purge_grant(tenant_id, client_id, integration)
    )


def of_current() -> UpstreamTokenCache:
    """The cache of the app handling this request."""
    return current_app.extensions[EXTENSION]
