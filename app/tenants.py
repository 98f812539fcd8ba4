"""Tenants and their identity-provider settings (DOMAIN.md: Tenant, IdentityProvider).

Input is already validated by ``app.schemas.TenantSchema``; this module turns it into rows.
A tenant's slug is its public name in every URL and never changes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from app import tenancy
from app.crypto import Keyring
from app.errors import Conflict, NotFound
from app.models import IdentityProvider, Tenant
from app.records import assign

# Built once (statement construction costs more than the lookup); the identity provider comes
# in the same SELECT: token validation needs it on every request (``oidc.TrustedIssuer``).
_BY_SLUG = (
    select(Tenant)
    .options(joinedload(Tenant.identity_provider))
    .where(Tenant.slug == bindparam("slug"))
)


def find(session: Session, slug: str) -> Tenant:
    """The tenant named ``slug``; the session is scoped to it from here on."""
    tenant = session.scalars(_BY_SLUG, {"slug": slug}).first()
    if tenant is None:
        raise NotFound(f"tenant {slug!r} does not exist")
    return tenancy.scope(session, tenant)


def list_page(session: Session, limit: int, after: str | None) -> list[Tenant]:
    """Tenants ordered by slug, ``limit`` of them after the slug ``after`` (keyset paging)."""
    statement = select(Tenant).order_by(Tenant.slug).limit(limit)
    if after:
        statement = statement.where(Tenant.slug > after)
    return list(session.scalars(statement))


def create(session: Session, keyring: Keyring, data: dict[str, Any]) -> Tenant:
    if session.scalar(select(Tenant.id).where(Tenant.slug == data["slug"])) is not None:
        raise Conflict(f"tenant {data['slug']!r} already exists", "slug")
    tenant = Tenant(slug=data["slug"])
    session.add(tenant)
    session.flush()
    tenancy.scope(session, tenant)
    update(session, keyring, tenant, data)
    return tenant


def update(session: Session, keyring: Keyring, tenant: Tenant, data: dict[str, Any]) -> list[str]:
    """Apply the given sections (absent ones are left as they are); return what changed."""
    if "slug" in data and data["slug"] != tenant.slug:
        raise Conflict("a tenant's slug cannot change", "slug")
    values: dict[str, Any] = {}
    if "display_name" in data:
        values["display_name"] = data["display_name"]
    if "users" in data:
        users = data["users"]
        values |= {
            "user_id_attribute": users["id_attribute"],
            "customer_attribute": users["customer_attribute"],
            "customer_required": users["customer_required"],
            "customer_claim": users["customer_claim"],
        }
    if "mail" in data:
        values |= {
            "mail_from": data["mail"]["sender"],
            "password_reset_url": data["mail"]["password_reset_url"],
        }
    if "oidc" in data:
        values["logout_redirect_uris"] = data["oidc"]["logout_redirect_uris"]
    changed = assign(tenant, values)
    if "idp" in data:
        changed += _set_identity_provider(session, keyring, tenant, data["idp"])
    return changed


def _set_identity_provider(
    session: Session, keyring: Keyring, tenant: Tenant, idp: dict[str, Any] | None
) -> list[str]:
    current = tenant.identity_provider
    if idp is None:
        if current is None:
            return []
        session.delete(current)
        tenant.identity_provider = None  # the deleted row must not linger on the tenant
        return ["idp"]
    if current is None:
        current = IdentityProvider(tenant_id=tenant.id)
        tenant.identity_provider = current
        session.add(current)
    values = {name: value for name, value in idp.items() if name != "connector_secret"}
    changed = [f"idp.{name}" for name in assign(current, values)]
    if "connector_secret" in idp:
        secret = idp["connector_secret"]
        context = connector_secret_context(tenant)
        old = (
            keyring.open(current.connector_secret_sealed, context)
            if (current.connector_secret_sealed)
            else None
        )
        if old != secret:
            current.connector_secret_sealed = keyring.seal(secret, context) if secret else None
            changed.append("idp.connector_secret")
    return changed


def connector_secret_context(tenant: Tenant) -> str:
    return f"tenant:{tenant.id}:connector-secret"


def delete(session: Session, tenant: Tenant) -> None:
    """Delete the tenant and, by cascade, everything it owns."""
    session.delete(tenant)
