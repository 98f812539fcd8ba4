"""Migrations: the models and the migrations agree, and downgrade/upgrade round-trips."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app import migrate, runtime
from app.models import Base


def test_the_migrations_build_exactly_the_models(app):
    db = runtime.of(app).db
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_downgrade_then_upgrade_round_trips(app, client):
    db = runtime.of(app).db
    head = migrate.head_revision()
    migrate.downgrade(db, "base")
    assert migrate.current_revision(db) == ""
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["migrations"].startswith("at none")
    migrate.upgrade(db)
    assert migrate.current_revision(db) == head
    assert client.get("/readyz").status_code == 200
