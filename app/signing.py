"""A tenant's signing keys for the tokens idbridge issues (DOMAIN.md: SigningKey).

Each tenant has its own RSA keys (RS256: what Snowflake External OAuth and most upstream
federation policies verify). The private key is sealed at rest (``app.crypto``, bound to the
tenant and the ``kid``); the public key is published at ``/t/{tenant}/jwks.json``.

Rotation (``rotate``; ``idbridge keys rotate``) follows the order verifiers need:

1. the new key is published at once but signs only from ``activates_at`` =
   now + ``PUBLISH_LEAD``, so every verifier that caches the JWKS for up to that long has
   seen it before its first token;
2. the old key keeps being published until ``retires_at`` = the new key's ``activates_at`` +
   ``MAX_TOKEN_LIFETIME``: every token it signed has expired by then.

The first key of a tenant signs at once: no verifier can have cached a JWKS without it.
"""

from __future__ import annotations

import functools
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.crypto import Keyring
from app.models import SigningKey, Tenant, utcnow

ALGORITHM = "RS256"
RSA_BITS = 2048
PUBLISH_LEAD = timedelta(hours=1)
MAX_TOKEN_LIFETIME = timedelta(seconds=86400)  # the longest integration token_lifetime


@dataclass(frozen=True)
class Signer:
    """An opened key, ready to sign for one tenant (never stored, never logged)."""

    kid: str
    algorithm: str
    private_key: Any

    def sign(self, claims: dict[str, Any], token_type: str | None = None) -> str:
        headers: dict[str, Any] = {"kid": self.kid}
        if token_type:
            headers["typ"] = token_type
        return jwt.encode(claims, self.private_key, algorithm=self.algorithm, headers=headers)


def _context(tenant_id: int, kid: str) -> str:
    return f"tenant:{tenant_id}:signing-key:{kid}"


def _new_key(keyring: Keyring, tenant: Tenant, activates_at: datetime) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    kid = secrets.token_urlsafe(12)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = json.loads(jwt.get_algorithm_by_name(ALGORITHM).to_jwk(private.public_key()))
    return SigningKey(
        tenant_id=tenant.id,
        kid=kid,
        algorithm=ALGORITHM,
        private_sealed=keyring.seal(pem, _context(tenant.id, kid)),
        public_jwk=public | {"kid": kid, "use": "sig", "alg": ALGORITHM},
        created_at=utcnow(),
        activates_at=activates_at,
    )


def published(session: Session, at: datetime | None = None) -> list[SigningKey]:
    """The keys of the session's tenant that verifiers must know now (not yet retired)."""
    at = at or utcnow()
    statement = (
        select(SigningKey)
        .where(or_(SigningKey.retires_at.is_(None), SigningKey.retires_at > at))
        .order_by(SigningKey.activates_at.desc(), SigningKey.id.desc())
    )
    return list(session.scalars(statement))


def jwks(session: Session) -> dict[str, Any]:
    """The tenant's JWK Set (RFC 7517 §5): public parts only."""
    return {"keys": [dict(key.public_jwk) for key in published(session)]}


def ensure_key(session: Session, keyring: Keyring, tenant: Tenant) -> bool:
    """Give the tenant its first key when it has none; return whether one was made."""
    if session.scalar(select(SigningKey.id).limit(1)) is not None:
        return False
    session.add(_new_key(keyring, tenant, activates_at=utcnow()))
    session.flush()
    return True


def signer(session: Session, keyring: Keyring, tenant: Tenant) -> Signer | None:
    """The key that signs now: the newest active, unretired one (``None`` when there is none)."""
    now = utcnow()
    for key in published(session, now):
        if key.activates_at <= now:
            pem = keyring.open(key.private_sealed, _context(tenant.id, key.kid))
            return Signer(kid=key.kid, algorithm=key.algorithm, private_key=_private_key(pem))
    return None


@functools.lru_cache(maxsize=1024)
def _private_key(pem: str) -> Any:
    """Parse a private key once per process: RSA parsing with its consistency checks costs
    ~30 ms, more than the whole rest of an exchange (bench/). The PEM came out of an
    authenticated seal (AES-GCM) and was made by idbridge, so it is the key that was stored."""
    return serialization.load_pem_private_key(pem.encode(), password=None)


def rotate(
    session: Session, keyring: Keyring, tenant: Tenant, lead: timedelta = PUBLISH_LEAD
) -> SigningKey:
    """Publish a new key that signs after ``lead``; schedule the current ones' retirement.
    A tenant without a key gets its first one, which signs at once."""
    if not published(session):
        ensure_key(session, keyring, tenant)
        return published(session)[0]
    activates_at = utcnow() + lead
    for key in published(session):
        if key.retires_at is None:
            key.retires_at = activates_at + MAX_TOKEN_LIFETIME
    key = _new_key(keyring, tenant, activates_at=activates_at)
    session.add(key)
    session.flush()
    return key


def due_for_rotation(session: Session, max_age: timedelta) -> bool:
    """Whether the newest key is older than ``max_age`` (the scheduled job's test)."""
    newest = session.scalars(select(SigningKey).order_by(SigningKey.created_at.desc())).first()
    return newest is None or newest.created_at < utcnow() - max_age
