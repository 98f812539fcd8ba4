"""``private_key_jwt`` client authentication (RFC 7523 §2.2 and §3; OIDC Core §9).

The client signs a JWT with a private key whose public half it registered (``Client.jwks``):
``iss`` and ``sub`` are its ``client_id``, ``aud`` names this tenant's issuer or token
endpoint, ``exp`` is required and at most ``MAX_LIFETIME`` ahead, ``jti`` is required and used
once (§3 item 7). Only asymmetric algorithms are accepted (RFC 8725 §3.1-3.2); keys are read
with ``app.tokens.parse_jwks``, so unusable or weak keys are ignored the same way.

``authenticate`` is the only way in: it verifies the assertion and consumes its ``jti`` in one
call, in a write transaction of its own that commits before the caller goes on. An assertion
is therefore spent the moment it authenticates a client, whatever the endpoint and whatever
follows (a refused exchange, an upstream that fails, introspection answering ``active:
false``, a caller's transaction that rolls back); the ``jti`` is kept (``app.replay``) until
the assertion expires.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import replay, tenancy
from app.database import Database
from app.models import Client
from app.oauth_errors import InvalidClient
from app.tokens import KEY_TYPES, LEEWAY, parse_jwks

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_LIFETIME = 600  # seconds an assertion may live from now (bounds the jti store)
MAX_LENGTH = 8192


@dataclass(frozen=True)
class _Verified:
    client: Client
    jti: str
    expires_at: datetime


def claimed_client(assertion: str) -> str:
    """The ``iss`` an assertion claims, unverified: only to name the caller in the audit log
    before ``verify`` proves it."""
    try:
        issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return ""
    return issuer[:200] if isinstance(issuer, str) and "\x00" not in issuer else ""


def _refuse(why: str) -> InvalidClient:
    return InvalidClient(f"client assertion refused: {why}")


def authenticate(
    session: Session, db: Database, client_id: str, assertion: str, audiences: tuple[str, ...]
) -> Client:
    """The client the assertion authenticates, its ``jti`` now spent; ``InvalidClient`` with
    the reason otherwise.

    ``session`` is the caller's read transaction (scoped to the tenant): the client and its
    keys are read there. The ``jti`` is recorded in a short write transaction of ``db`` that
    commits here (RFC 7523 §3 item 7: "used only once"), so nothing the caller does next can
    give it back; a store that cannot record it (the database, Redis) raises
    ``StoreUnavailable`` and the client is not authenticated (fail closed). Never call it from
    inside a write transaction: SQLite has one writer, and that would wait for itself.
    """
    verified = _verify(session, client_id, assertion, audiences)
    client = verified.client
    use = replay.Use(
        replay.Kind.CLIENT_ASSERTION,
        client.tenant_id,
        verified.jti,
        verified.expires_at,
        client_id=client.client_id,
    )
    with db.transaction() as write:
        tenancy.scope_id(write, client.tenant_id)
        if not replay.first_use(write, use):
            raise _refuse("the assertion was used before")
    return client


def _verify(
    session: Session, client_id: str, assertion: str, audiences: tuple[str, ...]
) -> _Verified:
    if not assertion or len(assertion) > MAX_LENGTH or assertion.count(".") != 2:
        raise _refuse("not a signed JWT")
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise _refuse("not a signed JWT") from None
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or not issuer or (client_id and issuer != client_id):
        raise _refuse("iss must be the client_id")
    client = session.scalars(select(Client).where(Client.client_id == issuer)).first()
    if client is None or not client.jwks:
        raise _refuse("the client has no registered keys")
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in KEY_TYPES:
        raise _refuse("the algorithm is not allowed")
    kid = header.get("kid")
    keys = [
        key.key
        for key in parse_jwks(client.jwks)
        if (kid is None or key.kid == kid) and key.fits(algorithm)
    ]
    claims = _decode(assertion, keys, algorithm, audiences)
    if claims.get("sub") != client.client_id:
        raise _refuse("sub must be the client_id")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise _refuse("jti is required")
    if claims["exp"] > time.time() + MAX_LIFETIME + LEEWAY:
        raise _refuse("the assertion lives too long")
    return _Verified(client, jti, datetime.fromtimestamp(claims["exp"], UTC))


def _decode(
    assertion: str, keys: list[Any], algorithm: str, audiences: tuple[str, ...]
) -> dict[str, Any]:
    for key in keys:
        try:
            return jwt.decode(
                assertion,
                key=key,
                algorithms=[algorithm],
                audience=list(audiences),
                leeway=LEEWAY,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidAudienceError:
            raise _refuse("aud must name this token endpoint") from None
        except jwt.ExpiredSignatureError:
            raise _refuse("the assertion has expired") from None
        except jwt.PyJWTError as exc:
            raise _refuse(type(exc).__name__) from None
    raise _refuse("the signature does not verify with a registered key")
