"""Engine, sessions and transactions: one ``Database`` per app, never a module-level engine.

SQLite is the zero-configuration default: WAL journal (readers never wait for the writer), a
busy timeout, foreign keys on, and ``BEGIN IMMEDIATE`` for every transaction so two writers
queue on the lock instead of failing at commit. PostgreSQL goes through psycopg 3 with a
pre-pinged connection pool. Every unit of work is one transaction (``Database.transaction``);
a lock or connection that cannot be had in time becomes ``StoreUnavailable`` (503).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import Conflict, StoreUnavailable
from app.settings import Settings
from app.tenancy import StoreSession


class Database:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.database_url
        self.is_sqlite = settings.is_sqlite
        self.engine = _create_engine(settings, for_writes=True)
        # SQLite readers take a plain BEGIN so they never queue behind the writer (WAL).
        self.read_engine = (
            _create_engine(settings, for_writes=False) if self.is_sqlite else self.engine
        )
        self._writers = threading.RLock() if self.is_sqlite else None
        self._timeout = settings.db_timeout
        # Handed to every session as ``session.info``: ``app.shared`` puts the app's shared
        # stores here, so domain code finds them from its session, in a request or not.
        self.info: dict[str, Any] = {}
        # Every session is a ``StoreSession``: the tenant guard is that class (app.tenancy).
        self._writer = sessionmaker(self.engine, class_=StoreSession, expire_on_commit=False)
        self._reader = sessionmaker(self.read_engine, class_=StoreSession, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A read-write transaction (``BEGIN IMMEDIATE`` on SQLite).

        On SQLite the threads of one process first take turns on a lock: SQLite's busy handler
        sleeps up to 100 ms between retries, so threads queued inside it wait far longer than
        the writer holds the lock (bench/: a quarter of a cached token exchange's time). Other
        processes still queue on SQLite's own lock, within the same ``db_timeout``.
        """
        if self._writers is None:
            with self._unit_of_work(self._writer) as session:
                yield session
            return
        if not self._writers.acquire(timeout=self._timeout):
            raise StoreUnavailable("the database is busy, try again shortly")
        try:
            with self._unit_of_work(self._writer) as session:
                yield session
        finally:
            self._writers.release()

    def read(self) -> AbstractContextManager[Session]:
        """A read-only transaction: a consistent snapshot that takes no write lock."""
        return self._unit_of_work(self._reader)

    @contextmanager
    def _unit_of_work(self, sessions: sessionmaker[StoreSession]) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back when it raises.

        Integrity violations that slipped past the services' own checks (a race between two
        writers) surface as ``Conflict``; lost connections and lock timeouts as
        ``StoreUnavailable``, so callers answer 409 or 503 instead of 500.
        """
        session = sessions(info=dict(self.info))
        try:
            with session.begin():
                yield session
        except IntegrityError as exc:
            raise Conflict("the change conflicts with an existing record") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_transient(exc):
                raise StoreUnavailable("the database is unavailable, try again shortly") from exc
            raise
        finally:
            session.close()

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()


def _is_transient(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return any(
        marker in message
        for marker in (
            "database is locked",
            "timeout",
            "connection",
            "terminating",
            "server closed",
        )
    )


def _create_engine(settings: Settings, for_writes: bool) -> Engine:
    if settings.is_sqlite:
        return _sqlite_engine(settings, for_writes)
    return create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=settings.db_timeout,
        pool_pre_ping=True,
        hide_parameters=True,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": max(1, int(settings.db_timeout)),
            "options": f"-c lock_timeout={int(settings.db_timeout * 1000)}",
        },
    )


def _sqlite_engine(settings: Settings, for_writes: bool) -> Engine:
    path = settings.database_url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        settings.database_url,
        connect_args={"timeout": settings.db_timeout, "check_same_thread": False},
        hide_parameters=True,  # bound values (sealed secrets, hashes) never reach a log
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.db_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if for_writes else "BEGIN")

    return engine
