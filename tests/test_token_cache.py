"""The upstream-token cache: one upstream call per key at a time, expiry before the
upstream's, purges by user and by grant (DOMAIN.md: Cached upstream token)."""

from __future__ import annotations

import threading
import time

import pytest

from app.token_cache import CacheKey, TokenCache
from app.upstream import UpstreamToken

KEY = CacheKey(1, "broker", "00u1", "snowflake-prod", "https://sf.example", "analyst")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_concurrent_requests_for_one_key_make_one_upstream_call():
    cache = TokenCache()
    calls = []
    release = threading.Event()

    def obtain() -> UpstreamToken:
        calls.append(1)
        release.wait(5)
        return UpstreamToken("token-1", time.time() + 600)

    results: list[tuple[UpstreamToken, bool]] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_obtain(KEY, obtain)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1
    assert {token.access_token for token, _ in results} == {"token-1"}
    assert sorted(cached for _, cached in results) == [False] + [True] * 7


def test_an_entry_expires_before_the_upstream_token_does():
    clock = Clock()
    cache = TokenCache(clock=clock)
    cache.get_or_obtain(KEY, lambda: UpstreamToken("a", clock.now + 600))
    clock.now += 539
    assert (
        cache.get_or_obtain(KEY, lambda: UpstreamToken("b", clock.now + 600))[0].access_token == "a"
    )
    clock.now += 1  # 60 s (the margin) before the upstream's expiry
    assert (
        cache.get_or_obtain(KEY, lambda: UpstreamToken("b", clock.now + 600))[0].access_token == "b"
    )


def test_a_failed_upstream_call_caches_nothing():
    cache = TokenCache()

    def failing() -> UpstreamToken:
        raise RuntimeError("upstream down")

    with pytest.raises(RuntimeError):
        cache.get_or_obtain(KEY, failing)
    token, cached = cache.get_or_obtain(KEY, lambda: UpstreamToken("ok", time.time() + 600))
    assert (token.access_token, cached) == ("ok", False)


def test_purges_drop_the_users_or_the_grants_entries_only():
    cache = TokenCache()
    other_user = KEY._replace(subject="00u2")
    other_grant = KEY._replace(integration="lake")
    other_tenant = KEY._replace(tenant_id=2)
    for key in (KEY, other_user, other_grant, other_tenant):
        cache.get_or_obtain(key, lambda: UpstreamToken("t", time.time() + 600))
    assert cache.purge_user(1, "00u1") == 2  # KEY and other_grant
    assert cache.purge_grant(1, "broker", "snowflake-prod") == 1  # other_user
    assert cache.get_or_obtain(other_tenant, lambda: UpstreamToken("new", 0))[1] is True
