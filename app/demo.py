"""``idbridge demo``: a working deployment on SQLite in one command.

Creates the instance folder's secret key and an operator token (both kept in the instance
folder, mode 0600, so the demo survives restarts), a ``demo`` tenant with a client, then prints
ready-to-paste calls and serves. Everything stays on loopback unless ``--host`` says otherwise.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from standardwebhooks import Webhook

from app import clients, credentials, tenants
from app.crypto import Keyring
from app.models import Tenant
from app.schemas import ClientSchema, TenantSchema
from app.server import migrated_database, serve
from app.settings import Settings, ensure_secret_key_file

DEMO_TENANT = "demo"
ADMIN_TOKEN_FILE = "demo_admin_token"
DEMO_SOURCE = "demo"


def _instance_file(instance: Path, name: str, make: str) -> str:
    path = instance / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make + "\n")
    return path.read_text().strip()


@dataclass(frozen=True)
class DemoCredentials:
    """What the printed calls need; SCIM token and webhook secret are made anew at each start
    (the previous demo ones are deleted), the client secret only once."""

    scim_token: str
    webhook_secret: str
    client_secret: str | None


def prepare(settings: Settings) -> DemoCredentials:
    """Make the demo tenant if it is missing, and fresh demo credentials, in one transaction."""
    db = migrated_database(settings)
    keyring = Keyring(settings.secret_key)
    client_secret = None
    try:
        with db.transaction() as session:
            if session.scalar(select(Tenant.id).where(Tenant.slug == DEMO_TENANT)) is None:
                tenant = tenants.create(
                    session,
                    keyring,
                    TenantSchema().load(
                        {
                            "slug": DEMO_TENANT,
                            "display_name": "Demo tenant",
                            "users": {"customer_required": False},
                        }
                    ),
                )
                _, client_secret = clients.create(
                    session, keyring, tenant, ClientSchema().load({"client_id": "broker"})
                )
            else:
                tenant = tenants.find(session, DEMO_TENANT)
            for row in [*credentials.scim_tokens(session), *credentials.webhook_secrets(session)]:
                if row.source == DEMO_SOURCE:
                    session.delete(row)
            session.flush()
            _, scim_token = credentials.add_scim_token(session, keyring, tenant, None, DEMO_SOURCE)
            _, webhook_secret = credentials.add_webhook_secret(
                session, keyring, tenant, None, DEMO_SOURCE
            )
        return DemoCredentials(scim_token, webhook_secret, client_secret)
    finally:
        db.dispose()


def _json_call(method: str, url: str, body: dict[str, Any], *headers: str) -> str:
    options = " ".join(f"-H {shlex.quote(header)}" for header in headers)
    return (
        f"curl -sS -X {method} {options} -H 'Content-Type: application/json' "
        f"-d {shlex.quote(json.dumps(body))} {url}"
    )


def calls(settings: Settings, base: str, demo: DemoCredentials) -> list[tuple[str, str]]:
    """(what it shows, curl command) for each call a first-time user can paste, in order."""
    admin = f"Authorization: Bearer {settings.admin_token}"
    tenant_url = f"{base}/admin/v1/tenants/{DEMO_TENANT}"
    scim = f"Authorization: Bearer {demo.scim_token}"
    user = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ada@example.com",
        "externalId": "00u-ada",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": "ada@example.com", "type": "work", "primary": True}],
    }
    body = json.dumps({"email": "ada@example.com"})
    webhook_id = f"msg_demo_{int(time.time())}"
    signed_at = datetime.now(UTC)
    signature = Webhook(demo.webhook_secret).sign(webhook_id, signed_at, body)
    webhook_headers = [
        f"webhook-id: {webhook_id}",
        f"webhook-timestamp: {int(signed_at.timestamp())}",
        f"webhook-signature: {signature}",
        "Content-Type: application/json",
    ]
    webhook = " ".join(f"-H {shlex.quote(header)}" for header in webhook_headers)
    return [
        ("health", f"curl -sS {base}/healthz"),
        ("readiness (database and migrations)", f"curl -sS {base}/readyz"),
        (
            "identity provider: provision a user over SCIM 2.0",
            _json_call("POST", f"{base}/t/{DEMO_TENANT}/scim/v2/Users", user, scim),
        ),
        (
            "identity provider: find it with a SCIM filter",
            f"curl -sS -H {shlex.quote(scim)} "
            f"'{base}/t/{DEMO_TENANT}/scim/v2/Users?filter=userName%20eq%20%22ada@example.com%22'",
        ),
        (
            "Users service: the signed `get` webhook by email (signed at start: valid 5 minutes)",
            f"curl -sS -X POST {webhook} -d {shlex.quote(body)} "
            f"{base}/t/{DEMO_TENANT}/webhooks/users/get",
        ),
        (
            "data broker: the tenant's authorization server metadata (RFC 8414)",
            f"curl -sS {base}/t/{DEMO_TENANT}/.well-known/oauth-authorization-server",
        ),
        ("operator: list tenants", f"curl -sS -H {shlex.quote(admin)} {base}/admin/v1/tenants"),
        (
            "operator: the demo tenant's clients",
            f"curl -sS -H {shlex.quote(admin)} {tenant_url}/clients",
        ),
        ("metrics (Prometheus)", f"curl -sS {base}/metrics"),
    ]


def run(host: str, port: int) -> None:
    instance = Path(os.environ.get("IDBRIDGE_INSTANCE_PATH", "instance")).absolute()
    ensure_secret_key_file(instance)
    admin_token = os.environ.get("IDBRIDGE_ADMIN_TOKEN") or _instance_file(
        instance, ADMIN_TOKEN_FILE, secrets.token_urlsafe(32)
    )
    settings = Settings.load(
        overrides={
            "instance_path": str(instance),
            "admin_token": admin_token,
            "allow_private_urls": True,
            "public_url": os.environ.get("IDBRIDGE_PUBLIC_URL", f"http://{host}:{port}"),
        }
    )
    demo = prepare(settings)
    base = f"http://{host}:{port}"
    click.echo(f"idbridge demo: tenant '{DEMO_TENANT}' on {settings.database_url}")
    click.echo(f"issuer: {settings.public_url}/t/{DEMO_TENANT}")
    if demo.client_secret:
        click.echo(f"client 'broker' secret (shown once): {demo.client_secret}")
    click.echo(f"SCIM token (made for this run): {demo.scim_token}")
    click.echo(f"webhook secret (made for this run): {demo.webhook_secret}")
    click.echo("\nTry these calls, in this order:\n")
    for title, command in calls(settings, base, demo):
        click.echo(f"# {title}\n{command}\n")
    click.echo(f"Serving on {base} (Ctrl-C stops).", nl=True)
    serve(settings, host, port, workers=1)
