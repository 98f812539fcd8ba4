"""Store faults become 503 with nothing half-written, and the store recovers by itself."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import func, select, text

from app import runtime, tenants
from app.database import Database
from app.errors import StoreUnavailable
from app.models import Tenant
from app.schemas import TenantSchema
from tests.conftest import make_settings


def _count_tenants(db: Database) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(Tenant))


def test_sqlite_locked_past_the_busy_timeout_is_unavailable_and_rolled_back(tmp_path):
    settings = make_settings(tmp_path, db_timeout=0.3)
    from app import migrate

    db = Database(settings)
    migrate.upgrade(db)
    blocker = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), timeout=0.1)
    blocker.isolation_level = None
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable), db.transaction() as session:
            tenants.create(session, None, TenantSchema().load({"slug": "blocked"}))
        assert _count_tenants(db) == 0  # readers are not blocked by the writer (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with db.transaction() as session:
        tenants.create(session, None, TenantSchema().load({"slug": "after"}))
    assert _count_tenants(db) == 1
    db.dispose()


def test_sqlite_writer_threads_of_one_process_wait_their_turn_within_the_timeout(tmp_path):
    """Threads of one process queue on the process's write lock, bounded by ``db_timeout``
    like SQLite's own lock: past it a 503, never a wait without end."""
    settings = make_settings(tmp_path, db_timeout=0.3)
    from app import migrate

    db = Database(settings)
    migrate.upgrade(db)
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.transaction() as session:
            tenants.create(session, None, TenantSchema().load({"slug": "holder"}))
            inside.set()
            release.wait(timeout=10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(timeout=10)
        with pytest.raises(StoreUnavailable), db.transaction() as session:
            tenants.create(session, None, TenantSchema().load({"slug": "waiting"}))
    finally:
        release.set()
        holder.join(timeout=10)
    with db.transaction() as session:
        tenants.create(session, None, TenantSchema().load({"slug": "after"}))
    assert _count_tenants(db) == 2
    db.dispose()


def test_a_failed_write_leaves_nothing(app):
    db = runtime.of(app).db
    with pytest.raises(RuntimeError), db.transaction() as session:
        tenants.create(session, None, TenantSchema().load({"slug": "half"}))
        session.flush()
        raise RuntimeError("fault after the first statement")
    assert _count_tenants(db) == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_killed_postgres_connection_is_unavailable_then_recovers(app, settings):
    db = runtime.of(app).db
    killer = Database(settings)
    with pytest.raises(StoreUnavailable), db.transaction() as session:
        tenants.create(session, None, TenantSchema().load({"slug": "cut"}))
        session.flush()
        pid = session.scalar(select(func.pg_backend_pid()))  # SQL text is refused in a session
        with killer.engine.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    killer.dispose()
    assert _count_tenants(db) == 0  # the pool replaced the dead connection by itself
    with db.transaction() as session:
        tenants.create(session, None, TenantSchema().load({"slug": "after"}))
    assert _count_tenants(db) == 1
