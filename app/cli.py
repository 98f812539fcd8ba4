"""The ``idbridge`` command line (CONTRACT §5): serve, apply, demo.

Every command reads the same ``Settings`` as the service; a bad setting ends the command with
its sentence and exit status 2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from app.settings import Settings, SettingsError


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.load(overrides=overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """idbridge: user webhooks, SCIM 2.0 and RFC 8693 token exchange for your IdP."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int) -> None:
    """Migrate the database, then serve with gunicorn."""
    from app import server

    server.serve(_settings(), host, port, workers)


@main.command("apply")
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The operator's YAML file (CONTRACT §5).",
)
def apply_command(path: Path) -> None:
    """Make tenants, clients, integrations and grants match a YAML file (one transaction)."""
    from app import operator_file, server
    from app.errors import DomainError

    settings = _settings()
    db = server.migrated_database(settings)
    try:
        report = operator_file.apply(settings, db, path, os.environ)
    except (operator_file.FileError, DomainError) as exc:
        click.echo(f"error: {exc}", err=True)
        click.echo("nothing was applied", err=True)
        sys.exit(1)
    finally:
        db.dispose()
    click.echo(report.render())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def demo(host: str, port: int) -> None:
    """Create a demo tenant on SQLite, print a ready-to-paste call for each caller, serve."""
    from app import demo as demo_module

    demo_module.run(host, port)


def _database(settings: Settings) -> Any:
    from app import server

    return server.migrated_database(settings)


@main.group()
def keys() -> None:
    """A tenant's signing keys (the tokens idbridge issues)."""


@keys.command("rotate")
@click.argument("slugs", nargs=-1, metavar="[TENANT]...")
def keys_rotate(slugs: tuple[str, ...]) -> None:
    """Publish a new signing key now for the named tenants (default: every tenant); it signs
    after an hour, when every verifier has seen it. The current key stays published until the
    last token it can sign has expired."""
    from sqlalchemy import select

    from app import signing, tenants
    from app.crypto import Keyring
    from app.errors import DomainError
    from app.models import Tenant

    settings = _settings()
    db = _database(settings)
    published: list[str] = []
    try:
        with db.read() as session:
            names = list(slugs) or list(session.scalars(select(Tenant.slug).order_by(Tenant.slug)))
        for slug in names:  # one transaction a tenant: a session is scoped to one tenant
            with db.transaction() as session:
                tenant = tenants.find(session, slug)
                key = signing.rotate(session, Keyring(settings.secret_key), tenant)
                published.append(
                    f"tenant {slug}: key {key.kid} published, "
                    f"signs from {key.activates_at.isoformat()}"
                )
    except DomainError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        db.dispose()
        for line in published:
            click.echo(line)


@main.command("audit")
@click.argument("slug", metavar="TENANT")
@click.option("--since", type=click.DateTime(), help="Events at or after (UTC).")
@click.option("--until", type=click.DateTime(), help="Events before (UTC).")
@click.option("--client", help="Only this client_id.")
@click.option("--user", help="Only this User id.")
@click.option("--integration", help="Only this integration.")
@click.option("--outcome", type=click.Choice(["success", "failure"]))
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10000))
def audit_command(slug: str, limit: int, **filters: Any) -> None:
    """Print the tenant's audit events, newest first, one JSON object a line."""
    import json
    from datetime import UTC

    from app import audit, tenants
    from app.errors import DomainError

    settings = _settings()
    db = _database(settings)
    try:
        with db.read() as session:
            tenants.find(session, slug)
            rows = audit.query(
                session,
                limit=limit,
                since=filters["since"] and filters["since"].replace(tzinfo=UTC),
                until=filters["until"] and filters["until"].replace(tzinfo=UTC),
                client_id=filters["client"],
                subject=filters["user"],
                integration=filters["integration"],
                outcome=filters["outcome"],
            )
            lines = [
                json.dumps(
                    {
                        "id": row.id,
                        "at": row.at.isoformat(),
                        "action": row.action,
                        "client_id": row.client_id,
                        "actors": row.actors,
                        "user": row.subject,
                        "integration": row.integration,
                        "audience": row.audience,
                        "scope": row.scope,
                        "outcome": row.outcome,
                        "error_code": row.error_code,
                        "reason": row.reason,
                        "request_id": row.request_id,
                    }
                )
                for row in rows
            ]
    except DomainError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        db.dispose()
    for line in lines:
        click.echo(line)


@main.group()
def mappings() -> None:
    """Upstream identity mappings of an integration."""


class _Rejected(Exception):
    def __init__(self, rows: list[tuple[int, str]]) -> None:
        super().__init__(f"{len(rows)} rows rejected")
        self.rows = rows


@mappings.command("import")
@click.argument("slug", metavar="TENANT")
@click.argument("name", metavar="INTEGRATION")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def mappings_import(slug: str, name: str, path: Path) -> None:
    """Import FILE.csv (header `user_id,upstream_subject`) into INTEGRATION's mappings.

    All or nothing (CONTRACT §5): one transaction; if any row cannot be stored, every such row
    is listed with its line and reason and nothing is imported.
    """
    import csv

    from app import integrations, tenants
    from app import mappings as mapping_service
    from app.errors import DomainError

    settings = _settings()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        total = max(0, sum(1 for _ in handle) - 1)
    db = _database(settings)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not set(mapping_service.CSV_COLUMNS) <= set(reader.fieldnames or []):
                click.echo("error: the CSV needs the header user_id,upstream_subject", err=True)
                sys.exit(1)
            with (
                db.transaction() as session,
                click.progressbar(length=total, label="importing", file=sys.stderr) as bar,
            ):
                tenants.find(session, slug)
                integration = integrations.find(session, name)
                report = mapping_service.import_rows(
                    session,
                    integration,
                    ((reader.line_num, row) for row in reader),
                    progress=bar.update,
                )
                if report.rejected:
                    raise _Rejected(report.rejected)  # rolls the transaction back
    except _Rejected as rejected:
        for line, why in rejected.rows:
            click.echo(f"line {line}: {why}", err=True)
        click.echo(f"{len(rejected.rows)} rows rejected: nothing was imported", err=True)
        sys.exit(1)
    except (DomainError, csv.Error, UnicodeDecodeError) as exc:
        click.echo(f"error: {exc}", err=True)
        click.echo("nothing was imported", err=True)
        sys.exit(1)
    finally:
        db.dispose()
    click.echo(f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged")


@main.command("admin")
@click.argument("method", type=click.Choice(["GET", "POST", "PUT", "PATCH", "DELETE"]))
@click.argument("path")
@click.option("-d", "--data", help="JSON body; `@FILE` reads it from a file, `@-` from stdin.")
def admin_command(method: str, path: str, data: str | None) -> None:
    """Any operation of the admin API, in-process: `idbridge admin GET /tenants`.

    PATH is relative to /admin/v1. The answer's JSON is printed; a 4xx or 5xx answer exits 1.
    No server and no operator token are needed: the command runs with the store's own rights.
    """
    import json
    import secrets

    from app import create_app, runtime

    if data and data.startswith("@"):
        data = click.open_file(data[1:] or "-").read()
    token = secrets.token_urlsafe(32)  # this process's own operator token, never stored
    settings = _settings(admin_token=token)
    _database(settings).dispose()  # migrated, as `serve` would
    flask_app = create_app(settings)
    try:
        response = flask_app.test_client().open(
            "/admin/v1/" + path.lstrip("/"),
            method=method,
            data=data,
            content_type="application/json" if data else None,
            headers={"Authorization": f"Bearer {token}"},
        )
    finally:
        runtime.of(flask_app).db.dispose()
    body = response.get_json(silent=True)
    if body is not None:
        click.echo(json.dumps(body, indent=2, default=str))
    if response.status_code >= 400:
        click.echo(f"error: HTTP {response.status_code}", err=True)
        sys.exit(1)
