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
