"""``/healthz``, ``/readyz`` and ``/metrics`` (Prometheus), and the request metrics behind them.

Each app has its own ``CollectorRegistry`` (two apps in one process must not share counters).
Under several gunicorn workers ``PROMETHEUS_MULTIPROC_DIR`` is set by ``idbridge serve`` and
``/metrics`` aggregates every worker's files (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from app import migrate, runtime, shared

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
probes = Blueprint("probes", __name__)


class RequestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "idbridge_http_requests",
            "HTTP requests answered, by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "idbridge_http_request_duration_seconds",
            "Time to answer an HTTP request, by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def exposition(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def init_app(flask_app: Flask) -> None:
    metrics = RequestMetrics()
    flask_app.extensions["idbridge.metrics"] = metrics
    flask_app.register_blueprint(probes)

    @flask_app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @flask_app.after_request
    def _observe(response: Response) -> Response:
        endpoint = request.endpoint or "unmatched"  # route names, never raw paths: bounded
        elapsed = time.perf_counter() - g.get("metrics_started", time.perf_counter())
        labels = (endpoint, request.method, str(response.status_code))
        metrics.requests.labels(*labels).inc()
        metrics.latency.labels(*labels).observe(elapsed)
        return response


@probes.get("/healthz")
def healthz() -> Response:
    """The process is up and answering (liveness)."""
    return jsonify(status="ok")


@probes.get("/readyz")
def readyz() -> tuple[Response, int]:
    """The database answers and its schema is at this release's head, and Redis answers when
    it is configured (readiness); each is reported apart in ``checks``."""
    checks: dict[str, str] = {}
    db = runtime.current().db
    try:
        current = migrate.current_revision(db)
        checks["database"] = "ok"
        head = migrate.head_revision()
        checks["migrations"] = "ok" if current == head else f"at {current or 'none'}, want {head}"
    except Exception:  # any failure to reach the store means "not ready", never a 500
        checks["database"] = "unreachable"
    redis_status = shared.of(current_app).redis_status()
    if redis_status is not None:  # configured: security checks need it (app.shared)
        checks["redis"] = redis_status
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503


@probes.get("/metrics")
def metrics_endpoint() -> Response:
    body = current_app.extensions["idbridge.metrics"].exposition()
    return Response(body, mimetype=CONTENT_TYPE_LATEST)
