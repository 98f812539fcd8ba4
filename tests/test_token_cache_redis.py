"""One contract for both upstream-token caches (in-process and Redis), then what only the Redis
one promises: sealed values and hashed key names, entries and purges shared between instances,
a down or hung Redis bypassed on reads and failing closed on purges."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from app import create_app, runtime, token_cache
from app.crypto import Keyring
from app.errors import StoreUnavailable
from app.token_cache import CacheKey, TokenCache, UpstreamTokenCache
from app.token_cache_redis import RedisTokenCache, connect
from app.upstream import UpstreamToken
from tests import redis_support
from tests.conftest import empty_tables, make_settings
from tests.idp import IdentityProviderServer

REDIS_URL = os.environ.get("IDBRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY = CacheKey(1, "broker", "00u1", "snowflake-prod", "https://sf.example", "analyst")
KEYRING = Keyring("token-cache-test-secret-key-0123456789abcdef")


def _redis_answers() -> bool:
    try:
        return bool(connect(REDIS_URL).ping())
    except redis.RedisError:
        return False


own_redis = redis_support.own_redis
needs_redis = pytest.mark.skipif(not _redis_answers(), reason=f"no Redis at {REDIS_URL}")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A unique key prefix per test, every key under it deleted afterwards."""
    value = f"idbridge-test:{uuid.uuid4().hex}:"
    yield value
    if _redis_answers():
        client = connect(REDIS_URL)
        for key in client.scan_iter(f"{value}*"):
            client.delete(key)


def _redis_cache(prefix: str) -> RedisTokenCache:
    return RedisTokenCache(connect(REDIS_URL), KEYRING, prefix=prefix)


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
def cache(request, prefix) -> UpstreamTokenCache:
    if request.param == "memory":
        return TokenCache()
    return _redis_cache(prefix)


def _token(value: str, lifetime: float = 600) -> Callable[[], UpstreamToken]:
    return lambda: UpstreamToken(value, time.time() + lifetime)


# --- the contract, for both ---------------------------------------------------------------


def test_a_miss_obtains_then_a_hit_returns_the_same_token(cache):
    token, cached = cache.get_or_obtain(KEY, _token("a"))
    assert (token.access_token, cached) == ("a", False)
    token, cached = cache.get_or_obtain(KEY, _token("b"))
    assert (token.access_token, cached) == ("a", True)
    token, cached = cache.get_or_obtain(KEY._replace(scope="other"), _token("c"))
    assert (token.access_token, cached) == ("c", False)


def test_an_entry_expires_a_tenth_of_its_lifetime_before_the_token(cache):
    start = time.time()
    cache.get_or_obtain(KEY, lambda: UpstreamToken("a", start + 2.0))  # margin 0.2 s
    assert cache.get_or_obtain(KEY, _token("b"))[0].access_token == "a"
    time.sleep(max(0.0, start + 1.9 - time.time()))  # inside the margin, before the expiry
    token, cached = cache.get_or_obtain(KEY, _token("b"))
    assert (token.access_token, cached) == ("b", False)


def test_concurrent_requests_for_one_key_make_one_upstream_call(cache):
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
    time.sleep(0.3)
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1
    assert {token.access_token for token, _ in results} == {"token-1"}
    assert sorted(cached for _, cached in results) == [False] + [True] * 7


def test_a_failed_upstream_call_caches_nothing_and_holds_no_lock(cache):
    def failing() -> UpstreamToken:
        raise RuntimeError("upstream down")

    with pytest.raises(RuntimeError):
        cache.get_or_obtain(KEY, failing)
    started = time.monotonic()
    token, cached = cache.get_or_obtain(KEY, _token("ok"))
    assert (token.access_token, cached) == ("ok", False)
    assert time.monotonic() - started < 1  # nobody waited on a dead lock


def test_purges_drop_the_users_the_grants_or_the_tokens_entries_only(cache):
    other_user = KEY._replace(subject="00u2")
    other_grant = KEY._replace(integration="lake")
    other_tenant = KEY._replace(tenant_id=2)
    other_client = KEY._replace(client_id="other", subject="00u3")
    for index, key in enumerate((KEY, other_user, other_grant, other_tenant, other_client)):
        cache.get_or_obtain(key, _token(f"t{index}"))
    assert cache.purge_user(1, "00u1") == 2  # KEY and other_grant
    assert cache.purge_user(1, "00u1") == 0
    assert cache.purge_grant(1, "broker", "snowflake-prod") == 1  # other_user
    assert cache.purge_token("t4") == 1  # other_client
    assert cache.purge_token("unknown") == 0
    assert cache.get_or_obtain(other_tenant, _token("new"))[1] is True
    for key in (KEY, other_user, other_grant, other_client):
        assert cache.get_or_obtain(key, _token("new"))[1] is False


# --- Redis only -----------------------------------------------------------------------------


@needs_redis
def test_redis_holds_neither_tokens_nor_ids_in_clear(prefix):
    cache = _redis_cache(prefix)
    cache.get_or_obtain(KEY, _token("at-SECRET-VALUE"))
    client = connect(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    assert len(keys) == 4  # the entry and its user, grant and token indexes
    dumped = " ".join(keys)
    for key in keys:
        dumped += " " + str(
            client.get(key) if client.type(key) == "string" else client.smembers(key)
        )
    for clear in ("at-SECRET-VALUE", "00u1", "broker", "snowflake-prod", "analyst"):
        assert clear not in dumped.removeprefix(prefix)
    (entry,) = [key for key in keys if client.type(key) == "string"]
    assert 539_000 < client.pttl(entry) <= 540_000  # 600 s minus the 60 s margin


@needs_redis
def test_two_instances_share_entries_and_purges(prefix):
    one, two = _redis_cache(prefix), _redis_cache(prefix)
    one.get_or_obtain(KEY, _token("shared"))
    token, cached = two.get_or_obtain(KEY, _token("other"))
    assert (token.access_token, cached) == ("shared", True)
    assert two.purge_user(1, "00u1") == 1
    assert one.get_or_obtain(KEY, _token("fresh"))[0].access_token == "fresh"
    assert one.purge_grant(1, "broker", "snowflake-prod") == 1
    assert two.get_or_obtain(KEY, _token("newer"))[1] is False


@needs_redis
def test_single_flight_holds_across_instances(prefix):
    caches = [_redis_cache(prefix) for _ in range(4)]
    calls = []

    def obtain() -> UpstreamToken:
        calls.append(1)
        time.sleep(0.3)
        return UpstreamToken("once", time.time() + 600)

    results: list[str] = []
    threads = [
        threading.Thread(
            target=lambda c=c: results.append(c.get_or_obtain(KEY, obtain)[0].access_token)
        )
        for c in caches
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert (len(calls), results) == (1, ["once"] * 4)


@needs_redis
def test_a_value_sealed_under_another_key_is_a_miss(prefix):
    _redis_cache(prefix).get_or_obtain(KEY, _token("old"))
    same = RedisTokenCache(connect(REDIS_URL), KEYRING, prefix=prefix)
    assert same.get_or_obtain(KEY, _token("new"))[1] is True
    # another deployment key names its keys differently and cannot open these values
    other = Keyring("another-secret-key-0123456789abcdef")
    assert (
        RedisTokenCache(connect(REDIS_URL), other, prefix=prefix).get_or_obtain(KEY, _token("new"))[
            1
        ]
        is False
    )


def test_with_redis_down_reads_bypass_the_cache_and_purges_fail_closed(own_redis, caplog):
    cache = RedisTokenCache.from_url(own_redis.url, KEYRING)
    assert cache.get_or_obtain(KEY, _token("before"))[1] is False
    assert cache.get_or_obtain(KEY, _token("x"))[1] is True
    own_redis.stop()

    calls = []

    def obtain() -> UpstreamToken:
        calls.append(1)
        return UpstreamToken("direct", time.time() + 600)

    started = time.monotonic()
    token, cached = cache.get_or_obtain(KEY, obtain)
    assert (token.access_token, cached) == ("direct", False)
    assert cache.get_or_obtain(KEY, obtain)[1] is False
    assert len(calls) == 2 and time.monotonic() - started < 3
    assert "bypassing" in caplog.text and "direct" not in caplog.text and "00u1" not in caplog.text
    for purge in (
        lambda: cache.purge_user(1, "00u1"),
        lambda: cache.purge_grant(1, "broker", "snowflake-prod"),
        lambda: cache.purge_token("before"),
    ):
        with pytest.raises(StoreUnavailable):
            purge()


def test_a_hung_redis_costs_a_short_timeout_not_a_hung_request():
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        cache = RedisTokenCache.from_url(
            f"redis://127.0.0.1:{listener.getsockname()[1]}/0", KEYRING
        )
        started = time.monotonic()
        token, cached = cache.get_or_obtain(KEY, _token("direct"))
        assert (token.access_token, cached) == ("direct", False)
        assert time.monotonic() - started < 2
        with pytest.raises(StoreUnavailable):
            cache.purge_user(1, "00u1")


# --- end to end: the app picks Redis when IDBRIDGE_REDIS_URL is set ---------------------------


@pytest.fixture
def idp() -> Iterator[IdentityProviderServer]:
    with IdentityProviderServer() as server:
        yield server


@needs_redis
def test_an_exchange_with_redis_configured_caches_in_redis_and_a_grant_revocation_purges_it(
    tmp_path, database_url, idp, admin_headers, prefix
):
    from tests.test_exchange import basic, exchange_form, put_mapping, seed_tenant

    flask_app = create_app(make_settings(tmp_path, database_url=database_url, redis_url=REDIS_URL))
    try:
        cache = token_cache.of(flask_app)
        assert isinstance(cache, RedisTokenCache)
        cache.prefix = prefix
        empty_tables(runtime.of(flask_app).db)
        seed_tenant(flask_app, "acme", idp)
        http = flask_app.test_client()
        assert put_mapping(http, admin_headers, "00u1", "ada").status_code == 201
        form = exchange_form(idp.access_token("00u1"))
        first = http.post("/t/acme/oauth/token", data=form, headers=basic())
        again = http.post("/t/acme/oauth/token", data=form, headers=basic())
        assert first.status_code == again.status_code == 200, first.get_json()
        token = first.get_json()["access_token"]
        assert again.get_json()["access_token"] == token  # a hit, from Redis
        client = connect(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}*"))
        assert keys and all(token not in str(client.dump(key)) for key in keys)

        revoked = http.delete(
            "/admin/v1/tenants/acme/grants/broker/snowflake-prod", headers=admin_headers
        )
        assert revoked.status_code == 204
        assert not [key for key in client.scan_iter(f"{prefix}e:*")]
    finally:
        runtime.of(flask_app).db.dispose()
