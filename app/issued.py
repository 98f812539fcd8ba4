"""The tokens idbridge issued: RFC 7009 revocation and RFC 7662 introspection.

A token is idbridge's when it verifies with one of the tenant's published keys
(``app.signing``) and its ``iss`` is the tenant's issuer. Only the client it was issued to
(its ``client_id`` claim) may introspect or revoke it; for any other caller, and for a token
that is unknown, expired or revoked, introspection answers ``{"active": false}`` (§2.2) and
revocation answers 200 and changes nothing (RFC 7009 §2.2). A revoked ``jti`` is kept until
the token expires, and the token leaves the upstream-token cache in the same transaction: once
the revocation answers, no worker or instance hands it out again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import exchange, signing, tenancy, tenants, token_cache
from app.models import IssuedTokenRevocation, utcnow
from app.runtime import Runtime
from app.tokens import LEEWAY

INTROSPECTED_CLAIMS = ("sub", "aud", "iss", "exp", "iat", "nbf", "jti", "client_id", "scope", "scp")


def _claims(session: Session, rt: Runtime, slug: str, token: str) -> dict[str, Any] | None:
    """The verified claims of a token this tenant issued, or ``None``."""
    if not token or len(token) > 16384 or token.count(".") != 2:
        return None
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    for key in signing.published(session):
        if key.kid != kid:
            continue
        try:
            claims = jwt.decode(
                token,
                jwt.PyJWK(dict(key.public_jwk)).key,
                algorithms=[key.algorithm],
                issuer=exchange.issuer_of(rt, slug),
                leeway=LEEWAY,
                options={"verify_aud": False, "require": ["exp", "iss", "jti"]},
            )
        except jwt.PyJWTError:
            return None
        revoked = session.scalar(
            select(IssuedTokenRevocation.id).where(IssuedTokenRevocation.jti == claims["jti"])
        )
        return None if revoked else claims
    return None


def introspect(
    rt: Runtime, slug: str, credentials: exchange.ClientCredentials, token: str
) -> dict[str, Any]:
    """RFC 7662 §2.2: the token's claims with ``active: true``, or ``{"active": false}``."""
    with rt.db.read() as session:
        tenants.find(session, slug)
        client = exchange.authenticate_client(session, rt, slug, credentials)
        claims = _claims(session, rt, slug, token)
    if claims is None or claims.get("client_id") != client.client_id:
        return {"active": False}
    answer = {name: claims[name] for name in INTROSPECTED_CLAIMS if name in claims}
    return {"active": True, "token_type": "Bearer"} | answer


def revoke(rt: Runtime, slug: str, credentials: exchange.ClientCredentials, token: str) -> None:
    """RFC 7009 §2.1: refuse the token from now on (introspection) and drop it from the cache.

    The client is authenticated in a read transaction (``exchange.authenticate_client`` spends
    an assertion in a write transaction of its own); the revocation is written in a second,
    which also drops the token from the cache, so both are seen at once by every worker."""
    with rt.db.read() as session:
        tenant_id = tenants.find(session, slug).id
        client = exchange.authenticate_client(session, rt, slug, credentials)
        claims = _claims(session, rt, slug, token)
    if claims is None or claims.get("client_id") != client.client_id:
        return
    with rt.db.transaction() as session:
        tenancy.scope_id(session, tenant_id)
        session.execute(
            delete(IssuedTokenRevocation).where(IssuedTokenRevocation.expires_at < utcnow())
        )
        try:
            with session.begin_nested():
                session.add(
                    IssuedTokenRevocation(
                        tenant_id=tenant_id,
                        jti=str(claims["jti"])[:255],
                        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
                    )
                )
        except IntegrityError:
            pass  # revoked before: revocation is idempotent
        token_cache.purge_token_on(session, tenant_id, token)
