"""``idbridge serve``: migrate, then run the app under gunicorn (its documented embedding API).

The master process migrates once before forking; each worker builds its own app (and so its
own engine and pool) after the fork, never sharing a connection across processes. Each worker
also schedules the background jobs (``app.jobs``), whose lease runs each once across all
workers and instances: the master starts no thread, so a fork never copies one mid-work (a
half-configured SQLAlchemy mapper, a lock, a connection). Prometheus' multiprocess mode is
switched on so ``/metrics`` adds up every worker.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from prometheus_client import values as prometheus_values

from app import migrate, shared
from app.crypto import Keyring
from app.database import Database
from app.observability import MULTIPROC_ENV
from app.settings import Settings


def migrated_database(settings: Settings) -> Database:
    """The store, migrated, with its shared state (``app.shared.install``): a command line
    that changes mappings or grants purges the token cache as a request would."""
    db = Database(settings)
    migrate.upgrade(db)
    shared.install(db, settings, Keyring(settings.secret_key))
    return db


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        from app import create_app, jobs, runtime

        flask_app = create_app(self.settings)
        jobs.start(runtime.of(flask_app))  # in each worker, after the fork; a lease picks one
        return flask_app


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def gunicorn_options(host: str, port: int, workers: int) -> dict[str, Any]:
    """The one gunicorn configuration idbridge runs under (the benchmarks print it)."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": 4,
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,  # idbridge writes its own JSON access line, without query strings
        "loglevel": "warning",
        "child_exit": _child_exit,
        "forwarded_allow_ips": "",  # app.forwarded decides, from IDBRIDGE_TRUSTED_PROXIES
    }


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    migrated_database(settings).dispose()
    own_metrics_dir = None
    if not os.environ.get(MULTIPROC_ENV):
        own_metrics_dir = os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="idbridge-metrics-")
    # prometheus-client picks its value store when first imported; pick again now that the
    # multiprocess folder is set, before any worker creates a metric.
    prometheus_values.ValueClass = prometheus_values.get_value_class()
    options = gunicorn_options(host, port, workers)
    try:
        _Gunicorn(settings, options).run()
    finally:
        if own_metrics_dir:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)
