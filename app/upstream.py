"""Upstream token handlers, one per integration ``kind``, behind one ``typing.Protocol``.

A handler turns a decided exchange (who, for which integration, which upstream scopes) into an
upstream token. This module holds the handlers where idbridge itself is the authorization
server the upstream trusts, so the token is minted and signed with the tenant's key
(``app.signing``):

- ``snowflake``: a Snowflake External OAuth access token (Snowflake docs, "External OAuth
  custom clients"): ``iss`` the tenant's issuer, ``aud`` the account URL, the upstream login
  name in the integration's user-mapping claim (``settings.user_mapping_claim``, default
  ``sub``; Snowflake's ``EXTERNAL_OAUTH_TOKEN_USER_MAPPING_CLAIM``), roles as
  ``scp: ["session:role:<ROLE>"]``, ``iat``/``nbf``/``exp``, RS256 with a published ``kid``;
- ``jwt``: an RFC 9068 JWT access token (header ``typ: at+jwt``; ``iss``, ``sub``, ``aud``,
  ``client_id``, ``iat``, ``exp``, ``jti``, ``scope``) for upstreams whose federation policy
  trusts the tenant's issuer.

``rfc8693`` and ``salesforce`` (idbridge as a client of an upstream authorization server) are
in ``app.upstream_remote``, which also holds the registry of all kinds (``handler_for``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.oauth_errors import InvalidScope
from app.signing import Signer

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SNOWFLAKE_ROLE_PREFIX = "session:role:"


@dataclass(frozen=True)
class Target:
    """The integration as a handler needs it (plain values, no database row)."""

    name: str
    kind: str
    audience: str
    token_lifetime: int
    scope_mapping: dict[str, Any]
    settings: dict[str, Any]
    # the upstream authorization server, for remote kinds
    flow: str = ""
    resource: str = ""
    token_endpoint: str = ""
    client_id: str = ""


@dataclass(frozen=True)
class UpstreamRequest:
    issuer: str
    target: Target
    client_id: str
    subject: str  # the User id
    upstream_subject: str
    upstream_scopes: tuple[str, ...]
    signer: Signer | None
    actors: tuple[str, ...] = ()
    # what remote handlers (``app.upstream_remote``) forward or present; never in a repr
    subject_token: str = field(default="", repr=False)
    subject_token_type: str = ""
    actor_token: str | None = field(default=None, repr=False)
    actor_token_type: str | None = None
    requested_token_type: str | None = None
    client_secret: str = field(default="", repr=False)
    allow_private: bool = False


@dataclass(frozen=True)
class UpstreamToken:
    access_token: str
    expires_at: float  # epoch seconds
    issued_token_type: str = ACCESS_TOKEN_TYPE
    token_type: str = "Bearer"
    # upstream response fields the broker needs as well (Salesforce ``instance_url``)
    extra: tuple[tuple[str, str], ...] = ()


class UpstreamUnavailable(Exception):
    """The upstream could not answer usefully (timeout, connection error, 5xx, an unusable
    body): retryable, counted by the circuit breaker (``app.upstream_guard``)."""


class UpstreamHandler(Protocol):
    """What every integration kind provides. ``remote`` handlers call an upstream server and
    go behind the circuit breaker; the others mint locally."""

    remote: bool

    def upstream_scopes(self, target: Target, scopes: Sequence[str]) -> tuple[str, ...]:
        """The upstream scopes the client's requested ``scopes`` mean; ``InvalidScope`` for a
        scope the integration cannot express (never dropped silently)."""
        ...

    def exchange(self, request: UpstreamRequest) -> UpstreamToken:
        """The upstream token; ``TemporarilyUnavailable`` when the upstream cannot answer."""
        ...


def _mapped(target: Target, scope: str) -> list[str]:
    value = target.scope_mapping.get(scope)
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(item) for item in value]


def require_signer(request: UpstreamRequest) -> Signer:
    if request.signer is None:  # the exchange always ensures a key first
        raise RuntimeError("no signing key")
    return request.signer


class SnowflakeHandler:
    """Snowflake External OAuth tokens signed by the tenant's key."""

    remote = False

    def upstream_scopes(self, target: Target, scopes: Sequence[str]) -> tuple[str, ...]:
        roles: list[str] = []
        for scope in scopes:
            mapped = _mapped(target, scope)
            if not mapped and scope.startswith(SNOWFLAKE_ROLE_PREFIX):
                mapped = [scope]
            if not mapped:
                raise InvalidScope(
                    f"scope {scope!r} maps to no Snowflake role in integration {target.name!r}"
                )
            for role in mapped:
                full = (
                    role if role.startswith(SNOWFLAKE_ROLE_PREFIX) else SNOWFLAKE_ROLE_PREFIX + role
                )
                if full not in roles:
                    roles.append(full)
        return tuple(roles)

    def exchange(self, request: UpstreamRequest) -> UpstreamToken:
        now = int(time.time())
        expires = now + request.target.token_lifetime
        claim = str(request.target.settings.get("user_mapping_claim") or "sub")
        claims: dict[str, Any] = {
            "iss": request.issuer,
            "aud": request.target.audience,
            "sub": request.upstream_subject,
            claim: request.upstream_subject,
            "scp": list(request.upstream_scopes),
            "iat": now,
            "nbf": now,
            "exp": expires,
            "jti": uuid.uuid4().hex,
            "client_id": request.client_id,
        }
        token = require_signer(request).sign(claims, token_type="JWT")
        return UpstreamToken(access_token=token, expires_at=float(expires))


class JwtHandler:
    """RFC 9068 JWT access tokens signed by the tenant's key."""

    remote = False

    def upstream_scopes(self, target: Target, scopes: Sequence[str]) -> tuple[str, ...]:
        mapped: list[str] = []
        for scope in scopes:
            for value in _mapped(target, scope) or [scope]:
                if value not in mapped:
                    mapped.append(value)
        return tuple(mapped)

    def exchange(self, request: UpstreamRequest) -> UpstreamToken:
        now = int(time.time())
        expires = now + request.target.token_lifetime
        claims: dict[str, Any] = {
            "iss": request.issuer,
            "sub": request.upstream_subject,
            "aud": request.target.audience,
            "client_id": request.client_id,
            "iat": now,
            "nbf": now,
            "exp": expires,
            "jti": uuid.uuid4().hex,
        }
        if request.upstream_scopes:
            claims["scope"] = " ".join(request.upstream_scopes)
        if request.actors:
            claims["act"] = act_chain(request.actors)
        token = require_signer(request).sign(claims, token_type="at+jwt")
        return UpstreamToken(access_token=token, expires_at=float(expires))


def act_chain(actors: Sequence[str]) -> dict[str, Any]:
    """RFC 8693 §4.1: the current actor outermost, earlier actors nested inside."""
    act: dict[str, Any] = {"sub": actors[-1]}
    inner = act
    for actor in reversed(actors[:-1]):
        inner["act"] = {"sub": actor}
        inner = inner["act"]
    return act
