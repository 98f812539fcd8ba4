"""Two tenants with the same names everywhere, a snapshot of everything one of them owns, and
``idbridge`` run as a real command (tests/test_isolation_*.py).

``alpha`` and ``beta`` both have client ``broker``, integration ``warehouse``, user ``00u1``
and its mapping, and a row of every ``TenantOwned`` model; alpha also owns names beta lacks
(client ``spare``, integration ``lake``, user ``00u2``), so beta creating them must not meet
alpha's. Every value that differs carries the tenant's slug, so an answer naming ``alpha``
under beta shows a leak.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app import (
    audit,
    clients,
    credentials,
    integrations,
    mappings,
    outbox,
    runtime,
    signing,
    tenancy,
    tenants,
)
from app.database import Database
from app.models import (
    Base,
    CachedToken,
    ClientAssertionUse,
    EmailToken,
    Group,
    GroupMember,
    IssuedTokenRevocation,
    LogoutTokenUse,
    OutboxMessage,
    SessionRevocation,
    SigningKey,
    Tenant,
    TenantOwned,
    User,
    UserSession,
    WebhookDelivery,
    utcnow,
)
from app.schemas import ClientSchema, IntegrationSchema, TenantSchema
from tests.conftest import SECRET_KEY, remember_secret

A, B = "alpha", "beta"
SECRETS = {
    A: remember_secret("cs_alpha-broker-secret-" + "a" * 32),
    B: remember_secret("cs_beta-broker-secret-" + "b" * 32),
}
TENANT_OWNED = sorted(
    (m.class_ for m in Base.registry.mappers if issubclass(m.class_, TenantOwned)),
    key=lambda model: model.__name__,
)
IDP = {
    "issuer": "https://idp.example/oauth2/default",
    "jwks_uri": "https://idp.example/oauth2/default/v1/keys",
    "audiences": ["api://platform"],
}


def seed(rt: runtime.Runtime, slug: str, *, due: bool) -> None:
    """A row of every tenant-owned model for ``slug``; ``due``: its outbox message is due, its
    used ``jti``s and mail link have expired and its signing key is old, so every scheduled
    job has work for it."""
    now = utcnow()
    later = now + (-timedelta(days=2) if due else timedelta(days=1))
    with rt.db.transaction() as session:
        tenant = tenants.create(
            session,
            rt.keyring,
            TenantSchema().load({"slug": slug, "display_name": f"{slug} corp", "idp": IDP}),
        )
        names = [("broker", "warehouse", "00u1")]
        if slug == A:
            names.append(("spare", "lake", "00u2"))
        for client_id, name, subject in names:
            integration = integrations.create(
                session,
                rt.keyring,
                tenant,
                IntegrationSchema().load(
                    {"name": name, "kind": "jwt", "audience": f"https://{name}.example"}
                ),
            )
            client, _ = clients.create(
                session,
                rt.keyring,
                tenant,
                ClientSchema().load(
                    {"client_id": client_id, "description": f"{slug}'s {client_id}"}
                    | {"audiences": [name]}
                ),
                secret=SECRETS[slug] if client_id == "broker" else SECRETS[slug][::-1],
            )
            integrations.grant(session, client, integration)
            email = f"{subject}@example.com"
            user = User(
                scim_id=f"scim-{subject}",
                subject=subject,
                user_name=email,
                user_name_canonical=email,
                customer=f"C-{slug}-{subject}",
                email=email,
                email_canonical=email,
            )
            session.add(user)
            session.flush()
            mappings.put(session, integration, subject, f"{slug}-{subject}")
        group = Group(scim_id="group-1", display_name="staff", display_name_canonical="staff")
        session.add(group)
        session.flush()
        session.add(GroupMember(group_pk=group.id, user_pk=user.id, display=f"{slug} member"))
        remember_secret(credentials.add_scim_token(session, rt.keyring, tenant, None)[1])
        remember_secret(credentials.add_webhook_secret(session, rt.keyring, tenant, None)[1])
        signing.ensure_key(session, rt.keyring, tenant)
        if due:  # old enough for the scheduled rotation
            session.scalars(select(SigningKey)).one().created_at = now - timedelta(days=100)
        outbox.enqueue_mail(
            session,
            rt,
            tenant,
            "mail-1",
            "verify_email",
            "00u1@example.com",
            f"https://{slug}/l",
            1,
        )
        session.scalars(select(OutboxMessage)).one().next_attempt_at = later
        session.add_all(
            [
                SessionRevocation(subject="00u1", session_id="s-1", not_before=now, reason=slug),
                UserSession(
                    subject="00u1", session_key="sid:s-1", session_id="s-1", session_time=now
                ),
                LogoutTokenUse(jti="jti-1", expires_at=later),
                ClientAssertionUse(client_id="broker", jti="jti-1", expires_at=later),
                IssuedTokenRevocation(jti="jti-1", expires_at=later),
                CachedToken(  # names only, as the cache keeps them: keyed hashes
                    key_hash=rt.keyring.hash_token(f"{slug}-entry"),
                    user_hash=rt.keyring.hash_token(f"{slug}-user"),
                    grant_hash=rt.keyring.hash_token(f"{slug}-grant"),
                    token_hash=rt.keyring.hash_token(f"{slug}-token"),
                    sealed=rt.keyring.seal(f"{slug}-token", f"{slug}-entry"),
                    good_until=later.timestamp(),
                ),
                WebhookDelivery(webhook_id="msg_1", operation="get", status=200, body=slug),
                EmailToken(
                    token_hash=rt.keyring.hash_token(f"{slug}-link"),
                    purpose="verify",
                    subject="00u1",
                    email_canonical="00u1@example.com",
                    expires_at=later,
                ),
            ]
        )
        entry = audit.Entry(
            action="token_exchange", request_id=f"{slug}-req", client_id="broker", subject="00u1"
        )
        audit.record(session, tenant.id, entry, audit.SUCCESS, reason=f"{slug} was here")


def snapshot(db: Database, slug: str) -> dict[str, list[dict[str, Any]]]:
    """Every column of every row ``slug`` owns, and its tenant row, read across tenants."""
    with db.read() as session:
        tenancy.cross_tenant(session)
        tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).one()
        found = {"Tenant": [_columns(tenant)]}
        for model in TENANT_OWNED:
            statement = select(model).where(model.tenant_id == tenant.id).order_by(model.id)
            found[model.__name__] = [_columns(row) for row in session.scalars(statement)]
    return found


def _columns(row: Any) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in row.__mapper__.column_attrs}


def idbridge(
    tmp_path: Path, database_url: str, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``idbridge ARGS`` as a new process: no app, no fixture and no earlier test in it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDBRIDGE_")}
    store = {
        "IDBRIDGE_DATABASE_URL": database_url,
        "IDBRIDGE_SECRET_KEY": SECRET_KEY,
        "IDBRIDGE_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=tmp_path,
        env=clean | store | env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
