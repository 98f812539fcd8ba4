"""One contract for the upstream-token cache (``app.token_cache.UpstreamTokenCache``), run
against the database cache on SQLite and PostgreSQL and the Redis cache on both: hits, expiry,
single flight across instances, purges, sealed values and hashed names. Then what only one of
them promises: Redis bypassed when down and failing closed on purges; expired database rows
swept by the cleanup job.

An "instance" (``tests/token_cache_support.py``) is a cache object over its own ``Database``,
as a worker has; ``tests/test_token_cache_served.py`` shows the same with real worker
processes, ``tests/test_token_cache_race.py`` a store racing a revocation.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app import jobs, runtime, tenants, token_cache
from app.crypto import Keyring
from app.errors import StoreUnavailable
from app.models import CachedToken
from app.schemas import TenantSchema
from app.token_cache import CacheKey
from app.token_cache_db import DatabaseTokenCache
from app.token_cache_redis import RedisTokenCache
from app.upstream import UpstreamToken
from tests import redis_support, token_cache_support
from tests.token_cache_support import KEYRING, Clock, Instance, key_of

own_redis = redis_support.own_redis
store = token_cache_support.store


# --- the contract ---------------------------------------------------------------------------


def test_a_miss_then_a_stored_token_is_a_hit_for_its_key_only(store):
    one = store.instance()
    key = key_of(store)
    assert one.lookup(key) is None
    one.fill(key, "a")
    assert one.lookup(key).access_token == "a"
    for other in (key._replace(scope="other"), key._replace(upstream_subject="bob")):
        assert one.lookup(other) is None


def test_an_entry_expires_a_tenth_of_its_lifetime_before_the_token(store):
    clock = Clock()
    one = store.instance(clock=clock)
    key = key_of(store)
    one.fill(key, "a", clock.now + 600)
    clock.now += 539
    assert one.lookup(key).access_token == "a"
    clock.now += 1  # 60 s (the margin) before the upstream's expiry
    assert one.lookup(key) is None


def test_another_instance_sees_the_entry_and_its_purge(store):
    one, two = store.instance(), store.instance()
    key = key_of(store)
    one.fill(key, "shared")
    assert two.lookup(key).access_token == "shared"
    assert two.purge(two.cache.purge_users, key.tenant_id, ["00u1"]) == 1
    assert one.lookup(key) is None


def test_concurrent_misses_on_several_instances_make_one_upstream_call(store):
    instances = [store.instance() for _ in range(4)]
    key = key_of(store)
    calls: list[int] = []
    answers: list[tuple[str, bool]] = []

    def exchange(instance: Instance) -> None:
        with instance.cache.flight(key) as flight:
            if flight.token is not None:
                answers.append((flight.token.access_token, True))
                return
            calls.append(1)
            time.sleep(0.3)  # the upstream answers slowly
            token = UpstreamToken("once", time.time() + 600)
            instance.store(flight, key, token)
            answers.append((token.access_token, False))

    threads = [threading.Thread(target=exchange, args=(instances[n % 4],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert len(calls) == 1
    assert sorted(answers) == [("once", False)] + [("once", True)] * 7


def test_a_failed_upstream_call_caches_nothing_and_frees_the_key_at_once(store):
    one, two = store.instance(), store.instance(wait=5.0)
    key = key_of(store)
    with pytest.raises(RuntimeError), one.cache.flight(key) as flight:
        assert flight.token is None
        raise RuntimeError("upstream down")
    started = time.monotonic()
    with two.cache.flight(key) as flight:
        assert flight.token is None  # this caller holds the key now, nobody waited
    assert time.monotonic() - started < 1
    assert one.lookup(key) is None


def test_a_holder_that_never_answers_delays_the_others_a_bounded_time(store):
    one, two = store.instance(), store.instance(wait=0.3)
    key = key_of(store)
    stuck = one.cache.flight(key).__enter__()  # holds the key and never stores nor leaves
    assert stuck.token is None
    started = time.monotonic()
    with two.cache.flight(key) as flight:
        assert flight.token is None  # waited, then obtains itself
        two.store(flight, key, UpstreamToken("late", time.time() + 600))
    assert 0.3 <= time.monotonic() - started < 3
    assert one.lookup(key).access_token == "late"


def test_purges_drop_the_users_the_grants_or_the_tokens_entries_only(store):
    one = store.instance()
    key = key_of(store)
    other_user = key._replace(subject="00u2")
    other_grant = key._replace(integration="lake")
    other_tenant = key._replace(tenant_id=store.tenant_ids[1])
    other_client = key._replace(client_id="other", subject="00u3")
    for index, each in enumerate((key, other_user, other_grant, other_tenant, other_client)):
        one.fill(each, f"t{index}")
    cache = one.cache
    assert one.purge(cache.purge_users, key.tenant_id, ["00u1"]) == 2  # key and other_grant
    assert one.purge(cache.purge_users, key.tenant_id, ["00u1"]) == 0
    assert one.purge(cache.purge_grant, key.tenant_id, "broker", "snowflake-prod") == 1
    assert one.purge(cache.purge_token, key.tenant_id, "t4") == 1  # other_client
    assert one.purge(cache.purge_token, key.tenant_id, "unknown") == 0
    assert one.lookup(other_tenant).access_token == "t3"
    for each in (key, other_user, other_grant, other_client):
        assert one.lookup(each) is None


def test_a_bulk_purge_drops_every_named_user(store):
    one = store.instance()
    subjects = [f"u{n}" for n in range(1200)]  # more than one chunk
    for subject in subjects[::100]:
        one.fill(key_of(store, subject=subject), subject)
    one.fill(key_of(store, subject="kept"), "kept")
    assert one.purge(one.cache.purge_users, store.tenant_ids[0], subjects) == 12
    assert one.lookup(key_of(store, subject="kept")).access_token == "kept"


def test_the_store_holds_neither_tokens_nor_ids_in_clear(store):
    one = store.instance()
    one.fill(key_of(store), "at-SECRET-VALUE")
    dumped = store.dump()
    assert dumped
    for clear in ("at-SECRET-VALUE", "00u1", "broker", "snowflake-prod", "analyst"):
        assert clear not in dumped


def test_a_value_sealed_under_another_key_is_a_miss(store):
    store.instance().fill(key_of(store), "old")
    other = store.instance(keyring=Keyring("another-secret-key-0123456789abcdef"))
    assert other.lookup(key_of(store)) is None


# --- the database cache only ----------------------------------------------------------------


def test_cleanup_sweeps_expired_entries_and_ended_leases(app):
    rt = runtime.of(app)
    with rt.db.transaction() as session:
        tenant_id = tenants.create(session, rt.keyring, TenantSchema().load({"slug": "acme"})).id
    cache = rt.db.info[token_cache.EXTENSION]
    assert isinstance(cache, DatabaseTokenCache)  # the default: no Redis configured
    one = Instance(rt.db, cache)
    key = CacheKey(tenant_id, "broker", "00u1", "snowflake-prod", "https://sf", "analyst")
    one.fill(key, "short", time.time() + 60)
    one.fill(key._replace(subject="00u2"), "long", time.time() + 3600)
    cache.flight(key._replace(subject="00u3")).__enter__()  # its holder then died

    def rows() -> int:
        with rt.db.engine.connect() as connection:
            return len(connection.execute(select(CachedToken.__table__)).all())

    jobs.cleanup(rt)
    assert rows() == 3  # nothing has ended yet
    jobs.cleanup(rt, datetime.fromtimestamp(time.time() + 120, UTC))
    assert rows() == 1
    assert one.lookup(key._replace(subject="00u2")).access_token == "long"


# --- Redis only -----------------------------------------------------------------------------


def test_with_redis_down_reads_bypass_the_cache_and_purges_fail_closed(app, own_redis, caplog):
    db = runtime.of(app).db
    cache = RedisTokenCache.from_url(own_redis.url, KEYRING)
    one = Instance(db, cache)
    key = CacheKey(1, "broker", "00u1", "snowflake-prod", "https://sf", "analyst")
    one.fill(key, "before")
    assert one.lookup(key).access_token == "before"
    own_redis.stop()

    started = time.monotonic()
    assert one.lookup(key) is None
    with cache.flight(key) as flight:
        assert flight.token is None
        with db.transaction() as session:
            flight.store(session, UpstreamToken("direct", time.time() + 600))  # not cached
    assert time.monotonic() - started < 3
    assert "bypassing" in caplog.text and "not cached" in caplog.text
    assert "direct" not in caplog.text and "00u1" not in caplog.text
    for purge, args in (
        (cache.purge_users, (1, ["00u1"])),
        (cache.purge_grant, (1, "broker", "snowflake-prod")),
        (cache.purge_token, (1, "before")),
    ):
        with pytest.raises(StoreUnavailable):
            one.purge(purge, *args)


def test_a_hung_redis_costs_a_short_timeout_not_a_hung_request(app):
    db = runtime.of(app).db
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        cache = RedisTokenCache.from_url(
            f"redis://127.0.0.1:{listener.getsockname()[1]}/0", KEYRING
        )
        key = CacheKey(1, "broker", "00u1", "snowflake-prod", "https://sf", "analyst")
        started = time.monotonic()
        with db.read() as session:
            assert cache.lookup(session, key) is None
        with cache.flight(key) as flight:
            assert flight.token is None
        assert time.monotonic() - started < 3
        with pytest.raises(StoreUnavailable), db.transaction() as session:
            cache.purge_users(session, 1, ["00u1"])
