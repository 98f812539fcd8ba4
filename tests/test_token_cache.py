"""The in-process cache's expiry margin, to the second, on an injected clock. The behaviour both
caches share (hits, single flight, purges, failures) is one contract suite in
``tests/test_token_cache_redis.py``, run against the in-process cache and Redis."""

from __future__ import annotations

from app.token_cache import CacheKey, TokenCache
from app.upstream import UpstreamToken

KEY = CacheKey(1, "broker", "00u1", "snowflake-prod", "https://sf.example", "analyst")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


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
