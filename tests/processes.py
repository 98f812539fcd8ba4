"""Real idbridge processes for tests: start on a free loopback port, wait until ready, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    process: subprocess.Popen[str]
    base_url: str
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def launch(args: list[str], env: Mapping[str, str], workdir: Path, port: int) -> Served:
    """Run ``idbridge ARGS`` (``python -m app``) without waiting for it."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("IDBRIDGE_")}
    workdir.mkdir(parents=True, exist_ok=True)
    out, err = workdir / "stdout.txt", workdir / "stderr.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=workdir,
        env=base_env | dict(env),
        text=True,
        stdout=out.open("w"),
        stderr=err.open("w"),
        stdin=subprocess.DEVNULL,
    )
    return Served(process, f"http://127.0.0.1:{port}", out, err)


def wait_ready(served: Served, timeout: float = 30.0) -> Served:
    """Wait until ``/readyz`` answers 200; stop the process and raise if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(
                f"idbridge exited with {served.process.returncode}: {served.stderr()}"
            )
        try:
            if requests.get(served.base_url + "/readyz", timeout=1).status_code == 200:
                return served
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or busy booting
            pass
        time.sleep(0.2)
    served.stop()
    raise RuntimeError(f"idbridge did not become ready: {served.stderr()}")


def start(
    args: list[str], env: Mapping[str, str], workdir: Path, port: int, timeout: float = 30.0
) -> Served:
    """Run ``idbridge ARGS`` (``python -m app``) and wait until ``/readyz`` answers 200."""
    return wait_ready(launch(args, env, workdir, port), timeout)


def serve(
    workdir: Path, database_url: str, workers: int = 2, wait: bool = True, **env: str
) -> Served:
    """``idbridge serve`` on a free port with the tests' keys; ``env`` adds IDBRIDGE_* values
    (given without the prefix, e.g. ``SMTP_URL=...``). ``wait=False``: return at once (start
    several together, then ``wait_ready`` each)."""
    from tests.conftest import ADMIN_TOKEN, SECRET_KEY

    port = free_port()
    settings = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "INSTANCE_PATH": str(workdir / "instance"),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
    } | env
    served = launch(
        ["serve", "--port", str(port), "--workers", str(workers)],
        {f"IDBRIDGE_{name}": value for name, value in settings.items()},
        workdir,
        port,
    )
    return wait_ready(served) if wait else served
