"""Shared fixtures: real SQLite and PostgreSQL stores, apps, clients, and the log-leak check.

``database_url`` is parametrized over both backends; every test that uses a store runs twice.
PostgreSQL tests skip cleanly when no server answers at ``IDBRIDGE_TEST_POSTGRES_URL``
(default: the local server's ``test`` database, trust auth). Each pytest worker gets its own
freshly migrated database per backend; each test starts from empty tables.
"""

from __future__ import annotations

import logging
import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import create_app, migrate, runtime, schemas
from app.database import Database
from app.models import Base
from app.settings import Settings

POSTGRES_URL = os.environ.get(
    "IDBRIDGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SECRET_KEY = "test-secret-key-" + secrets.token_hex(16)
ADMIN_TOKEN = "test-admin-token-" + secrets.token_hex(16)


# --- the log-leak check: every secret a test uses must never appear in any log line ---------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


_used_secrets: set[str] = {SECRET_KEY, ADMIN_TOKEN}
_capture = _Capture()


def remember_secret(value: str) -> str:
    """Register a secret a test used; the session fails if any log line ever shows it."""
    if value and len(value) >= 12:
        _used_secrets.add(value)
    return value


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_logs() -> Iterator[None]:
    from app.logs import JsonFormatter, RequestIdFilter

    _capture.setFormatter(JsonFormatter())
    _capture.addFilter(RequestIdFilter())
    loggers = [logging.getLogger(name) for name in ("idbridge", "app", "gunicorn.error", "")]
    for logger in loggers:
        logger.addHandler(_capture)
    yield
    for logger in loggers:
        logger.removeHandler(_capture)
    logs = "\n".join(_capture.lines)
    leaked = sorted(value[:6] + "..." for value in _used_secrets if value in logs)
    assert not leaked, f"secrets appeared in log lines: {leaked}"


def captured_logs() -> list[str]:
    return list(_capture.lines)


@pytest.fixture(scope="session", autouse=True)
def private_urls_allowed() -> Iterator[None]:
    """Test helpers load ``app.schemas`` directly with loopback URLs, as a deployment with
    ``IDBRIDGE_ALLOW_PRIVATE_URLS`` (``make_settings``' default) may; the admin API and
    ``idbridge apply`` state their own deployment's setting."""
    with schemas.private_urls(True):
        yield


# --- stores -----------------------------------------------------------------------------


def _postgres_available() -> bool:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> str:
    if not _postgres_available():
        pytest.skip(f"no PostgreSQL server answers at {make_url(POSTGRES_URL).host}")
    return POSTGRES_URL


def _create_postgres_database(server_url: str) -> tuple[str, Any]:
    name = f"idbridge_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database on each backend, one per pytest worker."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'idbridge.db'}"
        drop = None
    else:
        url, drop = _create_postgres_database(request.getfixturevalue("postgres_server"))
    db = Database(
        Settings.load(environ={}, overrides={"database_url": url, "secret_key": SECRET_KEY})
    )
    migrate.upgrade(db)
    db.dispose()
    yield url
    if drop:
        drop()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values = {
        "instance_path": str(tmp_path / "instance"),
        "secret_key": SECRET_KEY,
        "admin_token": ADMIN_TOKEN,
        "allow_private_urls": True,
        "public_url": "http://127.0.0.1:8000",
        "log_level": "DEBUG",  # the most a log can say: the leak check sees all of it
        # off unless a test is about them: a conformance run on a fast machine passes 200/s
        "rate_limit_client": "",
        "rate_limit_tenant": "",
    } | overrides
    return Settings.load(environ={}, overrides=values)


def empty_tables(db: Database) -> None:
    with db.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    flask_app = create_app(settings)
    empty_tables(runtime.of(flask_app).db)
    yield flask_app
    runtime.of(flask_app).db.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
