"""What the instances of one deployment must share at once, behind small interfaces.

Three checks guard security and must see every instance's writes at once: a ``jti`` used once
(``app.replay``), "not before" revocations of users and sessions (``app.revocation``) and the
claim on a webhook id while its first delivery runs (``app.idempotency``). Each has a
``typing.Protocol`` with two implementations, picked here once per store (``install``):

- single-instance mode (no ``IDBRIDGE_REDIS_URL``): the database and in-process locks;
- with Redis (``app.shared_redis``): Redis is the shared fast path, the database stays the
  durable record, and a Redis call that fails or times out (``IDBRIDGE_REDIS_TIMEOUT``)
  raises ``StoreUnavailable``: the caller answers 503 with ``Retry-After`` (fail closed).

The upstream-token cache (``app.token_cache``) is picked here too: sealed rows of the database,
or Redis. Grants and revoked issued tokens are read from the database in the same transaction
as the rows they guard (the grant row, the signing keys), so they need no second copy in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import redis
from flask import Flask
from sqlalchemy.orm import Session

from app import runtime, token_cache
from app.crypto import Keyring
from app.database import Database
from app.idempotency import DeliveryClaims, LocalDeliveryClaims
from app.replay import DatabaseReplayStore, ReplayStore
from app.revocation import DatabaseNotBefore, NotBeforeStore
from app.settings import Settings
from app.token_cache import UpstreamTokenCache
from app.token_cache_db import DatabaseTokenCache

EXTENSION = "idbridge.shared"


@dataclass(frozen=True)
class SharedState:
    replay: ReplayStore
    not_before: NotBeforeStore
    deliveries: DeliveryClaims
    token_cache: UpstreamTokenCache
    redis: redis.Redis | None = None

    def redis_status(self) -> str | None:
        """``/readyz``: "ok", "unreachable", or ``None`` in single-instance mode."""
        if self.redis is None:
            return None
        try:
            self.redis.ping()
        except redis.RedisError:
            return "unreachable"
        return "ok"


def install(db: Database, settings: Settings, keyring: Keyring) -> SharedState:
    """Build the shared state for ``db`` and hand it to every session it opens
    (``Database.info``): the app factory and every command line that opens the store call
    this, so domain code finds it from its session, in a request or not."""
    session_max_age = timedelta(seconds=settings.session_max_age)
    state: SharedState
    if settings.redis_url:
        from app import shared_redis
        from app.token_cache_redis import RedisTokenCache

        client = shared_redis.connect(settings.redis_url, settings.redis_timeout)
        state = SharedState(
            replay=shared_redis.RedisReplayStore(client, keyring),
            not_before=shared_redis.RedisNotBefore(client, keyring, session_max_age),
            deliveries=shared_redis.RedisDeliveryClaims(client, keyring),
            token_cache=RedisTokenCache(client, keyring),
            redis=client,
        )
    else:
        state = SharedState(
            DatabaseReplayStore(),
            DatabaseNotBefore(session_max_age),
            LocalDeliveryClaims(),
            DatabaseTokenCache(db, keyring),
        )
    db.info[EXTENSION] = state
    db.info[token_cache.EXTENSION] = state.token_cache
    return state


def init_app(flask_app: Flask) -> SharedState:
    rt = runtime.of(flask_app)
    state = install(rt.db, rt.settings, rt.keyring)
    flask_app.extensions[EXTENSION] = state
    return state


def of(flask_app: Flask) -> SharedState:
    return flask_app.extensions[EXTENSION]


def of_session(session: Session) -> SharedState:
    """The shared state of the store that opened ``session`` (``Database.info``)."""
    return session.info[EXTENSION]
