"""The token-cache contract's fixture: the store under test (the database cache on SQLite and
PostgreSQL, the Redis cache on both) and "instances" of it, each a cache object over its own
``Database`` (its own connection pool), as a gunicorn worker or another ``idbridge serve`` has.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from app import runtime, tenancy, tenants, token_cache
from app.crypto import Keyring
from app.database import Database
from app.models import CachedToken
from app.schemas import TenantSchema
from app.settings import Settings
from app.shared_redis import connect
from app.token_cache import CacheKey, Flight, UpstreamTokenCache
from app.token_cache_db import DatabaseTokenCache
from app.token_cache_redis import RedisTokenCache
from app.upstream import UpstreamToken
from tests.redis_support import REDIS_URL, needs_redis, redis_answers

KEYRING = Keyring("token-cache-test-secret-key-0123456789abcdef")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Instance:
    db: Database
    cache: UpstreamTokenCache

    def lookup(self, key: CacheKey) -> UpstreamToken | None:
        with self.db.read() as session:
            tenancy.scope_id(session, key.tenant_id)  # as the exchange's read transaction is
            return self.cache.lookup(session, key)

    def fill(self, key: CacheKey, value: str, expires_at: float | None = None) -> UpstreamToken:
        """What an exchange that missed does: a flight, the upstream's token, stored."""
        token = UpstreamToken(value, expires_at or time.time() + 600)
        with self.cache.flight(key) as flight:
            assert flight.token is None
            self.store(flight, key, token)
        return token

    def store(self, flight: Flight, key: CacheKey, token: UpstreamToken) -> None:
        """The holder's store, in a transaction scoped as the exchange's is."""
        with self.db.transaction() as session:
            tenancy.scope_id(session, key.tenant_id)
            flight.store(session, token)

    def purge(self, purge: Callable[..., int], tenant_id: int, *args: object) -> int:
        with self.db.transaction() as session:
            tenancy.scope_id(session, tenant_id)
            return purge(session, tenant_id, *args)


@dataclass
class Store:
    kind: str
    settings: Settings
    prefix: str
    tenant_ids: tuple[int, int]
    databases: list[Database] = field(default_factory=list)

    def instance(
        self, clock: Callable[[], float] = time.time, wait: float = 5.0, keyring: Keyring = KEYRING
    ) -> Instance:
        db = Database(self.settings)
        self.databases.append(db)
        cache: UpstreamTokenCache
        if self.kind == "database":
            cache = DatabaseTokenCache(db, keyring, clock=clock, wait_seconds=wait)
        else:
            cache = RedisTokenCache(connect(REDIS_URL), keyring, self.prefix, clock, wait)
        db.info[token_cache.EXTENSION] = cache
        return Instance(db, cache)

    def dump(self) -> str:
        """Everything the store holds for the cache, as text."""
        if self.kind == "database":
            with self.databases[0].engine.connect() as connection:
                return str(connection.execute(select(CachedToken.__table__)).all())
        client = connect(REDIS_URL)
        dumped = ""
        for key in client.scan_iter(f"{self.prefix}*"):
            value = client.get(key) if client.type(key) == "string" else client.smembers(key)
            dumped += f" {key.removeprefix(self.prefix)} {value}"
        return dumped


@pytest.fixture(params=["database", pytest.param("redis", marks=needs_redis)])
def store(request, app, settings) -> Iterator[Store]:
    rt = runtime.of(app)
    ids = []
    for slug in ("acme", "globex"):
        with rt.db.transaction() as session:
            ids.append(tenants.create(session, rt.keyring, TenantSchema().load({"slug": slug})).id)
    prefix = f"idbridge-test:{uuid.uuid4().hex}:"
    state = Store(request.param, settings, prefix, (ids[0], ids[1]))
    yield state
    for db in state.databases:
        db.dispose()
    if request.param == "redis" and redis_answers():
        client = connect(REDIS_URL)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def key_of(store: Store, **changes: object) -> CacheKey:
    key = CacheKey(store.tenant_ids[0], "broker", "00u1", "snowflake-prod", "https://sf", "analyst")
    return key._replace(**changes)
