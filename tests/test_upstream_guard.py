"""One contract for the circuit breaker and the negative cache, in-process and in Redis, then
what only Redis promises: state shared between instances, hashed key names, and a down Redis
bypassed (closed breaker, no negative entry) within a short timeout."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from app.crypto import Keyring
from app.shared_redis import connect
from app.upstream_guard import Breaker, MemoryBreaker, MemoryNegativeCache, NegativeCache
from app.upstream_guard_redis import RedisBreaker, RedisNegativeCache
from tests.processes import free_port
from tests.redis_support import REDIS_URL, needs_redis, redis_answers

KEYRING = Keyring("upstream-guard-test-secret-key-0123456789abcdef")
SCOPE = "1\x1fcrm"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def prefix() -> Iterator[str]:
    value = f"idbridge-test:{uuid.uuid4().hex}:"
    yield value
    if redis_answers():
        client = connect(REDIS_URL)
        for key in client.scan_iter(f"{value}*"):
            client.delete(key)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
def breaker(request, prefix, clock) -> Breaker:
    if request.param == "memory":
        return MemoryBreaker(clock=clock)
    return RedisBreaker(connect(REDIS_URL), KEYRING, prefix=prefix, clock=clock)


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
def negative(request, prefix) -> NegativeCache:
    if request.param == "memory":
        return MemoryNegativeCache()
    return RedisNegativeCache(connect(REDIS_URL), KEYRING, prefix=prefix)


# --- the contract, for both ---------------------------------------------------------------


def test_the_breaker_opens_after_n_consecutive_failures(breaker, clock):
    for _ in range(2):
        assert breaker.acquire(SCOPE, 3, 30) == 0
        breaker.failure(SCOPE, 3, 30)
    assert breaker.acquire(SCOPE, 3, 30) == 0  # two failures: still closed
    breaker.failure(SCOPE, 3, 30)
    assert breaker.acquire(SCOPE, 3, 30) == pytest.approx(30)
    clock.now += 10
    assert breaker.acquire(SCOPE, 3, 30) == pytest.approx(20)
    assert breaker.acquire("1\x1fother", 3, 30) == 0  # per integration


def test_a_success_resets_the_count(breaker):
    breaker.failure(SCOPE, 2, 30)
    breaker.success(SCOPE)
    breaker.failure(SCOPE, 2, 30)
    assert breaker.acquire(SCOPE, 2, 30) == 0


def test_half_open_lets_one_probe_through_which_closes_or_reopens(breaker, clock):
    breaker.failure(SCOPE, 1, 30)
    clock.now += 30
    assert breaker.acquire(SCOPE, 1, 30) == 0  # the probe
    assert breaker.acquire(SCOPE, 1, 30) > 0  # everyone else waits for it
    breaker.failure(SCOPE, 1, 30)  # the probe failed: open again, for a full cool-down
    assert breaker.acquire(SCOPE, 1, 30) == pytest.approx(30)
    clock.now += 30
    assert breaker.acquire(SCOPE, 1, 30) == 0
    breaker.success(SCOPE)  # the probe succeeded: closed for all
    assert breaker.acquire(SCOPE, 1, 30) == 0
    assert breaker.acquire(SCOPE, 1, 30) == 0


def test_the_negative_cache_holds_what_was_added_and_nothing_else(negative):
    assert not negative.contains("1\x1fcrm\x1f00u2")
    negative.add("1\x1fcrm\x1f00u2", 60)
    assert negative.contains("1\x1fcrm\x1f00u2")
    assert not negative.contains("1\x1fcrm\x1f00u1")


def test_a_negative_entry_expires():
    clock = Clock()
    negative = MemoryNegativeCache(clock=clock)
    negative.add("k", 60)
    clock.now += 59.9
    assert negative.contains("k")
    clock.now += 0.1
    assert not negative.contains("k")


# --- Redis only ---------------------------------------------------------------------------


@needs_redis
def test_instances_share_the_breaker_and_redis_sees_no_ids(prefix, clock):
    one = RedisBreaker(connect(REDIS_URL), KEYRING, prefix=prefix, clock=clock)
    two = RedisBreaker(connect(REDIS_URL), KEYRING, prefix=prefix, clock=clock)
    one.failure(SCOPE, 2, 30)
    two.failure(SCOPE, 2, 30)
    assert one.acquire(SCOPE, 2, 30) > 0
    RedisNegativeCache(connect(REDIS_URL), KEYRING, prefix=prefix).add(SCOPE + "\x1f00u2", 60)
    names = list(connect(REDIS_URL).scan_iter(f"{prefix}*"))
    assert names and not any("crm" in name or "00u2" in name for name in names)


def test_a_down_redis_is_bypassed_quickly(caplog):
    down = connect(f"redis://127.0.0.1:{free_port()}/0")
    breaker = RedisBreaker(down, KEYRING)
    negative = RedisNegativeCache(down, KEYRING)
    breaker.failure(SCOPE, 1, 30)
    assert breaker.acquire(SCOPE, 1, 30) == 0  # closed: a cache, never a reason to refuse
    breaker.success(SCOPE)
    negative.add("k", 60)
    assert not negative.contains("k")
    assert "Redis unavailable" in caplog.text
