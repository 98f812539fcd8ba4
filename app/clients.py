"""OAuth clients of the token endpoint (DOMAIN.md: Client).

A client authenticates with a secret (kept as a keyed hash, RFC 6749 §2.3.1) or with registered
public keys (``private_key_jwt``, RFC 7523). Its ``audiences`` name the tenant's integrations it
may ask for; ``scopes`` bound what it may request.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app import token_cache
from app.crypto import Keyring, generate_token
from app.errors import Conflict, InvalidInput
from app.models import Client, Integration, Tenant
from app.records import assign, one_or_404

CLIENT_SECRET_PREFIX = "cs_"
MIN_SECRET_LENGTH = 32


def find(session: Session, client_id: str) -> Client:
    return one_or_404(
        session, select(Client).where(Client.client_id == client_id), f"client {client_id!r}"
    )


# Built once, bound per call: building a statement costs more than running it (bench/).
_BY_CLIENT_ID = select(Client).where(Client.client_id == bindparam("client_id"))


def authenticate(session: Session, keyring: Keyring, client_id: str, secret: str) -> Client | None:
    """The client whose id and secret these are, in the session's tenant only (RFC 6749 §2.3.1).

    The secret is compared in constant time; an unknown client costs the same hash.
    """
    client = session.scalars(_BY_CLIENT_ID, {"client_id": client_id}).first()
    stored = client.secret_hash if client and client.secret_hash else keyring.hash_token("")
    matches = keyring.token_matches(secret, stored)
    return client if client and client.secret_hash and matches else None


def list_all(session: Session) -> list[Client]:
    return list(session.scalars(select(Client).order_by(Client.client_id)))


def create(
    session: Session,
    keyring: Keyring,
    tenant: Tenant,
    data: dict[str, Any],
    secret: str | None = None,
    secret_source: str = "api",
) -> tuple[Client, str | None]:
    """Create a client; return it and its secret when one was generated (shown once)."""
    if session.scalar(select(Client.id).where(Client.client_id == data["client_id"])):
        raise Conflict(f"client {data['client_id']!r} already exists", "client_id")
    client = Client(tenant_id=tenant.id, client_id=data["client_id"])
    session.add(client)
    update(session, client, data)
    generated = None
    if secret is None and not client.jwks:
        secret = generated = generate_token(CLIENT_SECRET_PREFIX)
    if secret is not None:
        set_secret(keyring, client, secret, secret_source)
    return client, generated


def update(session: Session, client: Client, data: dict[str, Any]) -> list[str]:
    if "client_id" in data and data["client_id"] != client.client_id:
        raise Conflict("a client's client_id cannot change", "client_id")
    if "audiences" in data:
        _check_audiences(session, data["audiences"])
    return assign(client, {name: value for name, value in data.items() if name != "client_id"})


def set_secret(keyring: Keyring, client: Client, secret: str, source: str = "api") -> bool:
    """Replace the client's secret; return whether it changed."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise InvalidInput(
            f"a client secret must be at least {MIN_SECRET_LENGTH} characters", "secret"
        )
    if client.secret_hash and keyring.token_matches(secret, client.secret_hash):
        return False
    client.secret_hash = keyring.hash_token(secret)
    client.secret_source = source
    return True


def rotate_secret(keyring: Keyring, client: Client) -> str:
    secret = generate_token(CLIENT_SECRET_PREFIX)
    set_secret(keyring, client, secret)
    return secret


def delete(session: Session, client: Client) -> None:
    """Delete the client, its grants (cascade) and their cached upstream tokens."""
    for integration in client.audiences:
        token_cache.purge_grant_on(session, client.tenant_id, client.client_id, integration)
    session.delete(client)


def _check_audiences(session: Session, audiences: list[str]) -> None:
    known = set(session.scalars(select(Integration.name).where(Integration.name.in_(audiences))))
    missing = [name for name in audiences if name not in known]
    if missing:
        raise InvalidInput(f"no integration named {missing[0]!r} in this tenant", "audiences")
