"""What every benchmark shares: free loopback ports, server processes started and stopped,
percentiles and the gunicorn configuration they all run under."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from gunicorn.app.base import BaseApplication

from app.server import gunicorn_options

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


def start(
    name: str,
    args: list[str],
    env: dict[str, str],
    ready_url: str,
    folder: Path,
    ready_status: int | None = 200,
) -> Process:
    """Start ``python -m *args``; ready when ``ready_url`` answers ``ready_status`` (any
    status when ``None``)."""
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    process = Process(name, popen, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited with {popen.returncode}: {log.read_text()[-2000:]}")
        try:
            status = requests.get(ready_url, timeout=1).status_code
            if ready_status is None or status == ready_status:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.2)
    process.stop()
    raise RuntimeError(f"{name} did not become ready: {log.read_text()[-2000:]}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def describe_options(workers: int) -> dict[str, Any]:
    options = gunicorn_options("127.0.0.1", 0, workers)
    options.pop("bind")
    return {k: (v.__name__ if callable(v) else v) for k, v in options.items()}


def children(pid: int) -> list[str]:
    """The process ids of ``pid``'s children (a gunicorn master's workers), from /proc."""
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def worker_rss_mb(master_pid: int) -> float:
    """Mean resident memory (VmRSS, /proc) of a gunicorn master's worker processes, in MB."""
    sizes = []
    for pid in children(master_pid):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sum(sizes) / len(sizes) if sizes else 0.0


class AppServer(BaseApplication):  # type: ignore[misc]
    """A Flask app under ``gunicorn_options`` (what ``idbridge serve`` runs): the baselines
    are served exactly like idbridge. ``factory`` runs in each worker."""

    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.factory()


def serve(factory: Callable[[], Flask], port: int, workers: int) -> None:
    AppServer(factory, gunicorn_options("127.0.0.1", port, workers)).run()


def idbridge_environment(folder: Path, database_url: str, redis_url: str) -> dict[str, str]:
    """The environment of an idbridge under test: this one's without any ``IDBRIDGE_*``, a fresh
    instance folder and secret key, and rate limits off (one client at full speed is what is
    measured, not what a limit refuses)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDBRIDGE_")}
    env |= {
        "IDBRIDGE_INSTANCE_PATH": str(folder / "instance"),
        "IDBRIDGE_SECRET_KEY": secrets.token_urlsafe(48),
        "IDBRIDGE_ALLOW_PRIVATE_URLS": "1",
        "IDBRIDGE_LOG_LEVEL": "WARNING",
        "IDBRIDGE_RATE_LIMIT_CLIENT": "",
        "IDBRIDGE_RATE_LIMIT_TENANT": "",
    }
    if database_url:
        env["IDBRIDGE_DATABASE_URL"] = database_url
    if redis_url:
        env["IDBRIDGE_REDIS_URL"] = redis_url
    return env
