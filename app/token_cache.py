"""The upstream-token cache (DOMAIN.md: Cached upstream token): one per deployment store.

Keyed by (tenant, client, user, integration, audience, scope, actors, upstream identity); an
entry lives until the token's expiry minus ``margin`` (a tenth of its lifetime, at most
``MAX_MARGIN`` seconds), so a token handed out always has time left and never outlives what the
upstream said. Two implementations of ``UpstreamTokenCache``, picked by ``app.shared``:
``app.token_cache_db`` (sealed rows in the database, the default) and ``app.token_cache_redis``
(``IDBRIDGE_REDIS_URL``). Either way every worker of every instance sees one cache: a hit, a
single flight (``flight``: one upstream call per key for the whole deployment) and a purge are
seen by all. Values are sealed (AES-GCM bound to the entry's keyed hash) and every name or
column that points at an entry is a keyed hash: the store never holds a token or an id in clear.

What keeps a revoked token from being handed out again, on every path (requests, CLI, jobs):

- Purges run inside the revoking transaction, found from its session (``Database.info``, never
  ``current_app``): ``purge_user_on`` (logout, block, delete: ``app.revocation``),
  ``purge_grant_on`` (grant revoked, client or integration deleted), ``purge_token_on``
  (RFC 7009), ``purge_remapped_on`` (a mapping changed). In the database they are DELETEs that
  commit with the revocation; in Redis they run before it commits (a failure rolls the
  revocation back with 503).
- An exchange that called the upstream stores its token with ``store_on``, in the write
  transaction that re-checks grant and session. The store and the purges of the user or the
  grant serialise: on PostgreSQL both take transaction-scoped advisory locks keyed on (tenant,
  user) and (tenant, client, integration), the store before its re-check; on SQLite every
  write transaction holds the database's write lock (``BEGIN IMMEDIATE``). So either the
  revocation commits first and the re-check refuses, or the store commits first and the purge
  deletes it: a token obtained before a revocation is never stored after it.
- ``purge_token_on`` and ``purge_remapped_on`` need no lock: a token is unknown to anyone until
  the exchange that stored it answers, and the upstream identity is part of the key, so a
  racing store under the old mapping is never found under the new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import NamedTuple, Protocol, Self

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from app.crypto import Keyring, SecretUnreadable
from app.upstream import UpstreamToken

EXTENSION = "idbridge.token_cache"  # where ``Database.info`` (and so ``session.info``) holds it
CONTEXT = "token-cache"
MAX_MARGIN = 60.0
LEASE_SECONDS = 10.0  # a single flight's holder that dies frees the key after this
WAIT_SECONDS = 5.0  # how long the others wait for its token before calling themselves
POLL_SECONDS = 0.05


class CacheKey(NamedTuple):
    tenant_id: int
    client_id: str
    subject: str
    integration: str
    audience: str
    scope: str
    actors: str = ""  # the delegation chain: a delegated token differs by its ``act``
    # the mapped identity: a changed mapping never gets the old identity's token
    upstream_subject: str = ""


def good_until(token: UpstreamToken, now: float) -> float:
    """When a cached ``token`` stops being handed out: its expiry minus the margin."""
    margin = min(MAX_MARGIN, max(0.0, token.expires_at - now) / 10)
    return token.expires_at - margin


class Flight(Protocol):
    """One caller's turn at a key missing from the cache (``UpstreamTokenCache.flight``)."""

    token: UpstreamToken | None  # stored by the holder this caller waited for; else obtain

    def store(self, session: Session, token: UpstreamToken) -> None:
        """Cache ``token`` in ``session``'s transaction (call through ``store_on``)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Free the key for the next caller unless this one stored a token."""
        ...


class UpstreamTokenCache(Protocol):
    def lookup(self, session: Session, key: CacheKey) -> UpstreamToken | None:
        """The usable cached token for ``key`` (the hot path: read in ``session``)."""
        ...

    def flight(self, key: CacheKey) -> Flight:
        """Single flight: of all callers missing ``key`` at once, on any worker or instance,
        one gets ``token is None`` (it obtains and stores); the others wait for its token
        (at most ``WAIT_SECONDS``, then they obtain too)."""
        ...

    def purge_users(self, session: Session, tenant_id: int, subjects: Sequence[str]) -> int: ...

    def purge_grant(
        self, session: Session, tenant_id: int, client_id: str, integration: str
    ) -> int: ...

    def purge_token(self, session: Session, tenant_id: int, access_token: str) -> int: ...


# --- what both implementations share: keyed names, sealed values -------------------------


def digest(keyring: Keyring, kind: str, *fields: object) -> str:
    """A keyed hash naming an entry (``entry``) or what purges find it by (``user``,
    ``grant``, ``token``)."""
    return keyring.hash_token("\x1f".join(str(field) for field in (kind, *fields)))


class Digests(NamedTuple):
    entry: str
    user: str
    grant: str

    @classmethod
    def of(cls, keyring: Keyring, key: CacheKey) -> Digests:
        return cls(
            digest(keyring, "entry", *key),
            digest(keyring, "user", key.tenant_id, key.subject),
            digest(keyring, "grant", key.tenant_id, key.client_id, key.integration),
        )


def seal(keyring: Keyring, entry: str, token: UpstreamToken, until: float) -> str:
    value = {
        "access_token": token.access_token,
        "expires_at": token.expires_at,
        "issued_token_type": token.issued_token_type,
        "token_type": token.token_type,
        "extra": token.extra,
        "good_until": until,
    }
    return keyring.seal(json.dumps(value), f"{CONTEXT}:{entry}")


def unseal(keyring: Keyring, entry: str, sealed: str, now: float) -> UpstreamToken | None:
    """The token in ``sealed`` if it opens for ``entry`` and is still good; a value sealed
    under another key or for another entry is a miss, never an error."""
    try:
        data = json.loads(keyring.open(sealed, f"{CONTEXT}:{entry}"))
    except (SecretUnreadable, ValueError):
        return None
    if now >= data["good_until"]:
        return None
    return UpstreamToken(
        data["access_token"],
        data["expires_at"],
        data["issued_token_type"],
        data["token_type"],
        tuple((name, value) for name, value in data.get("extra", [])),
    )


# --- the wiring: found from the session, serialised with the revocations -------------------


def of_session(session: Session) -> UpstreamTokenCache:
    """The cache of the store that opened ``session`` (``app.shared.install`` puts it in
    ``Database.info``): in a request, a CLI command or a job alike."""
    cache = session.info.get(EXTENSION)
    if cache is None:
        raise RuntimeError("this store has no token cache: build it with app.shared.install")
    return cache


_ADVISORY_LOCK = select(func.pg_advisory_xact_lock(bindparam("lock_id")))  # reaches no table


def _serialise(session: Session, *names: tuple[object, ...]) -> None:
    """Take PostgreSQL's transaction-scoped advisory locks on ``names``, in one fixed order,
    held until commit; nothing on SQLite, whose write transactions already run one at a time."""
    if session.get_bind().dialect.name != "postgresql":
        return
    lock_ids = sorted(
        int.from_bytes(
            hashlib.blake2b(repr(name).encode(), digest_size=8).digest(), "big", signed=True
        )
        for name in names
    )
    for lock_id in lock_ids:
        session.execute(_ADVISORY_LOCK, {"lock_id": lock_id})


def _user(tenant_id: int, subject: str) -> tuple[object, ...]:
    return ("token-cache:user", tenant_id, subject)


def _grant(tenant_id: int, client_id: str, integration: str) -> tuple[object, ...]:
    return ("token-cache:grant", tenant_id, client_id, integration)


def store_on(
    session: Session,
    key: CacheKey,
    flight: Flight,
    token: UpstreamToken,
    still_valid: Callable[[], None],
) -> None:
    """Cache the token an upstream call just gave, in ``session``'s transaction: lock the
    user and the grant as their purges do, then ``still_valid()`` (raises if the grant or the
    session ended meanwhile), then store."""
    _serialise(
        session,
        _user(key.tenant_id, key.subject),
        _grant(key.tenant_id, key.client_id, key.integration),
    )
    still_valid()
    flight.store(session, token)


def purge_user_on(session: Session, tenant_id: int, subject: str) -> None:
    """The user's access ended (logout, block, delete): drop every token cached for them, in
    ``session``'s transaction."""
    _serialise(session, _user(tenant_id, subject))
    of_session(session).purge_users(session, tenant_id, [subject])


def purge_grant_on(session: Session, tenant_id: int, client_id: str, integration: str) -> None:
    """The grant ended (revoked, its client or integration deleted): drop its tokens."""
    _serialise(session, _grant(tenant_id, client_id, integration))
    of_session(session).purge_grant(session, tenant_id, client_id, integration)


def purge_token_on(session: Session, tenant_id: int, access_token: str) -> None:
    """RFC 7009 §2.1: the revoked token leaves the cache with the revocation."""
    of_session(session).purge_token(session, tenant_id, access_token)


def purge_remapped_on(session: Session, tenant_id: int, subjects: Sequence[str]) -> None:
    """The users' upstream identities changed (a mapping put, deleted or imported)."""
    if subjects:
        of_session(session).purge_users(session, tenant_id, subjects)
