"""``idbridge demo``: a working deployment on SQLite in one command.

Creates the instance folder's secret key and an operator token (both kept in the instance
folder, mode 0600, so the demo survives restarts), a ``demo`` tenant with a client, then prints
ready-to-paste calls and serves. Everything stays on loopback unless ``--host`` says otherwise.
"""

from __future__ import annotations

import os
import secrets
import shlex
from pathlib import Path

import click
from sqlalchemy import select

from app import clients, tenants
from app.crypto import Keyring
from app.models import Tenant
from app.schemas import ClientSchema, TenantSchema
from app.server import migrated_database, serve
from app.settings import Settings, ensure_secret_key_file

DEMO_TENANT = "demo"
ADMIN_TOKEN_FILE = "demo_admin_token"


def _instance_file(instance: Path, name: str, make: str) -> str:
    path = instance / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make + "\n")
    return path.read_text().strip()


def prepare(settings: Settings) -> str | None:
    """Make the demo tenant if it is missing; return its client's secret when made now."""
    db = migrated_database(settings)
    keyring = Keyring(settings.secret_key)
    try:
        with db.transaction() as session:
            if session.scalar(select(Tenant.id).where(Tenant.slug == DEMO_TENANT)) is not None:
                return None
            tenant = tenants.create(
                session,
                keyring,
                TenantSchema().load({"slug": DEMO_TENANT, "display_name": "Demo tenant"}),
            )
            _, secret = clients.create(
                session, keyring, tenant, ClientSchema().load({"client_id": "broker"})
            )
        return secret
    finally:
        db.dispose()


def calls(settings: Settings, base: str) -> list[tuple[str, str]]:
    """(what it shows, curl command) for each call a first-time user can paste."""
    admin = f"Authorization: Bearer {settings.admin_token}"
    tenant_url = f"{base}/admin/v1/tenants/{DEMO_TENANT}"
    return [
        ("health", f"curl -sS {base}/healthz"),
        ("readiness (database and migrations)", f"curl -sS {base}/readyz"),
        ("operator: list tenants", f"curl -sS -H {shlex.quote(admin)} {base}/admin/v1/tenants"),
        (
            "operator: the demo tenant's clients",
            f"curl -sS -H {shlex.quote(admin)} {tenant_url}/clients",
        ),
        (
            "operator: add a SCIM token (shown once)",
            f"curl -sS -X POST -H {shlex.quote(admin)} -H 'Content-Type: application/json' "
            f"-d '{{}}' {tenant_url}/scim-tokens",
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
    client_secret = prepare(settings)
    base = f"http://{host}:{port}"
    click.echo(f"idbridge demo: tenant '{DEMO_TENANT}' on {settings.database_url}")
    click.echo(f"issuer: {settings.public_url}/t/{DEMO_TENANT}")
    if client_secret:
        click.echo(f"client 'broker' secret (shown once): {client_secret}")
    click.echo("\nTry these calls:\n")
    for title, command in calls(settings, base):
        click.echo(f"# {title}\n{command}\n")
    click.echo(f"Serving on {base} (Ctrl-C stops).", nl=True)
    serve(settings, host, port, workers=1)
