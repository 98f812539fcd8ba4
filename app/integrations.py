"""Integrations (upstream systems) and the grants that let a client use one (DOMAIN.md).

The upstream client secret is sealed: idbridge presents it to the upstream's token endpoint.
Revoking a grant keeps the row (``revoked_at``) so the audit trail can name it; granting again
reactivates it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from app import token_cache
from app.crypto import Keyring
from app.errors import Conflict
from app.models import Client, Grant, Integration, Tenant, utcnow
from app.records import assign, one_or_404


def client_secret_context(tenant: Tenant, name: str) -> str:
    return f"tenant:{tenant.id}:integration:{name}:client-secret"


def find(session: Session, name: str) -> Integration:
    return one_or_404(
        session, select(Integration).where(Integration.name == name), f"integration {name!r}"
    )


def list_all(session: Session) -> list[Integration]:
    return list(session.scalars(select(Integration).order_by(Integration.name)))


def create(session: Session, keyring: Keyring, tenant: Tenant, data: dict[str, Any]) -> Integration:
    if session.scalar(select(Integration.id).where(Integration.name == data["name"])):
        raise Conflict(f"integration {data['name']!r} already exists", "name")
    integration = Integration(tenant_id=tenant.id, name=data["name"], kind=data["kind"])
    session.add(integration)
    update(keyring, tenant, integration, data)
    return integration


def update(
    keyring: Keyring,
    tenant: Tenant,
    integration: Integration,
    data: dict[str, Any],
    secret_source: str = "api",
) -> list[str]:
    if "name" in data and data["name"] != integration.name:
        raise Conflict("an integration's name cannot change", "name")
    values = {k: v for k, v in data.items() if k not in ("name", "client_secret")}
    changed = assign(integration, values)
    if "client_secret" in data:
        secret = data["client_secret"]
        context = client_secret_context(tenant, integration.name)
        sealed = integration.client_secret_sealed
        if (keyring.open(sealed, context) if sealed else None) != secret:
            integration.client_secret_sealed = keyring.seal(secret, context) if secret else None
            integration.client_secret_source = secret_source if secret else ""
            changed.append("client_secret")
    return changed


def delete(session: Session, integration: Integration) -> None:
    """Delete the integration, its grants (cascade) and their cached tokens, and its name from
    clients' audiences."""
    for client in session.scalars(select(Client)):
        if integration.name in client.audiences:
            client.audiences = [name for name in client.audiences if name != integration.name]
        token_cache.purge_grant_on(
            session, integration.tenant_id, client.client_id, integration.name
        )
    session.delete(integration)


def find_grant(session: Session, client: Client, integration: Integration) -> Grant:
    statement = select(Grant).where(
        Grant.client_pk == client.id, Grant.integration_pk == integration.id
    )
    return one_or_404(
        session, statement, f"grant of {integration.name!r} to client {client.client_id!r}"
    )


def list_grants(session: Session, include_revoked: bool = False) -> list[Grant]:
    statement = select(Grant).order_by(Grant.id)
    if not include_revoked:
        statement = statement.where(Grant.revoked_at.is_(None))
    return list(session.scalars(statement))


def grant(session: Session, client: Client, integration: Integration) -> tuple[Grant, bool]:
    """Let ``client`` exchange for ``integration``; return the grant and whether it changed."""
    existing = session.scalars(
        select(Grant).where(Grant.client_pk == client.id, Grant.integration_pk == integration.id)
    ).first()
    if existing is None:
        row = Grant(tenant_id=client.tenant_id, client_pk=client.id, integration_pk=integration.id)
        session.add(row)
        session.flush()
        return row, True
    if existing.revoked_at is not None:
        existing.revoked_at = None
        return existing, True
    return existing, False


def revoke(grant_row: Grant) -> bool:
    """Revoke the grant; its cached upstream tokens are purged in the same transaction, so
    the next exchange on any instance is refused and nothing cached outlives the grant."""
    if grant_row.revoked_at is not None:
        return False
    grant_row.revoked_at = utcnow()
    session = object_session(grant_row)
    if session is not None:
        token_cache.purge_grant_on(
            session, grant_row.tenant_id, grant_row.client.client_id, grant_row.integration.name
        )
    return True
