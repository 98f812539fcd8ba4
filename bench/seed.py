"""Seed the benchmark tenant through the storage layer: a tenant trusting the bench IdP, a
client with a known secret, a ``snowflake`` integration granted to it, users with mappings
(bulk-inserted), a webhook secret, and an empty ``snowflake-import`` integration for the
mapping import."""

from __future__ import annotations

import uuid

from sqlalchemy import insert

from app import clients, create_app, credentials, integrations, migrate, runtime, tenants
from app.models import UpstreamMapping, User
from app.schemas import ClientSchema, IntegrationSchema, TenantSchema
from app.settings import Settings
from bench.idp import BenchIdentityProvider

TENANT = "bench"
CLIENT_ID = "broker"
INTEGRATION = "snowflake"
IMPORT_INTEGRATION = "snowflake-import"
SCOPE = "analyst"
ACCOUNT = "https://bench-xy12345.snowflakecomputing.com"


def subject_of(index: int) -> str:
    return f"00u{index:07d}"


def seed(
    settings: Settings,
    idp: BenchIdentityProvider,
    secret: str,
    users: int,
    webhook_secret: str,
) -> None:
    flask_app = create_app(settings)
    rt = runtime.of(flask_app)
    try:
        migrate.upgrade(rt.db)
        with rt.db.transaction() as session:
            tenant = tenants.create(
                session, rt.keyring, TenantSchema().load({"slug": TENANT, "idp": idp.tenant_idp()})
            )
            snowflake = integrations.create(
                session,
                rt.keyring,
                tenant,
                IntegrationSchema().load(
                    {
                        "name": INTEGRATION,
                        "kind": "snowflake",
                        "audience": ACCOUNT,
                        "scope_mapping": {SCOPE: "ANALYST"},
                        "token_lifetime": 600,
                    }
                ),
            )
            broker, _ = clients.create(
                session,
                rt.keyring,
                tenant,
                ClientSchema().load(
                    {"client_id": CLIENT_ID, "audiences": [INTEGRATION], "scopes": [SCOPE]}
                ),
                secret=secret,
            )
            integrations.grant(session, broker, snowflake)
            credentials.add_webhook_secret(session, rt.keyring, tenant, webhook_secret)
            integrations.create(
                session,
                rt.keyring,
                tenant,
                IntegrationSchema().load(
                    {
                        "name": IMPORT_INTEGRATION,
                        "kind": "snowflake",
                        "audience": ACCOUNT.replace("bench-", "import-"),
                        "token_lifetime": 600,
                    }
                ),
            )
            subjects = [subject_of(i) for i in range(users)]
            session.execute(
                insert(User),
                [
                    {
                        "tenant_id": tenant.id,
                        "scim_id": str(uuid.uuid4()),
                        "subject": s,
                        "user_name": f"{s}@example.com",
                        "user_name_canonical": f"{s}@example.com",
                        "customer": f"C-{s}",
                        "email": f"{s}@example.com",
                        "email_canonical": f"{s}@example.com",
                    }
                    for s in subjects
                ],
            )
            session.execute(
                insert(UpstreamMapping),
                [
                    {
                        "tenant_id": tenant.id,
                        "integration_pk": snowflake.id,
                        "subject": s,
                        "upstream_subject": f"login_{s}",
                        "source": "api",
                    }
                    for s in subjects
                ],
            )
    finally:
        rt.db.dispose()
