"""Schema migrations (Alembic), run by ``idbridge serve`` before it serves and by the tests.

Several instances may start at once (scale-out): on PostgreSQL the upgrade holds a
transaction-level advisory lock, so one instance migrates and the others wait, then find the
schema current. SQLite's ``BEGIN IMMEDIATE`` lock does the same for one file.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from app.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
ADVISORY_LOCK_ID = 0x1DB41D6E


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head() or ""


def current_revision(db: Database) -> str:
    with db.read_engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() or ""


def upgrade(db: Database, revision: str = "head") -> None:
    config = _config()
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(db: Database, revision: str) -> None:
    config = _config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def autogenerate(db: Database, message: str) -> None:
    """Developer aid: write a new revision from the difference between models and the store."""
    config = _config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
