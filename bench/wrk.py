"""wrk (Debian package ``wrk``) as the load generator for requests that never change: a Lua
script sets the method, headers and body and prints wrk's own counts and latency percentiles
as JSON. Bounded by time (``-d``); wrk's C client leaves the CPU to the servers, where the
Python client (``bench/load.py``) spends a share of it itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Request:
    """One request, sent again and again."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass
class WrkResult:
    """One wrk round; the same fields ``bench.load.RoundResult`` reports."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua(value: str) -> str:
    level = "=" * 4
    assert f"]{level}]" not in value
    return f"[{level}[{value}]{level}]"


def script(request: Request) -> str:
    lines = [f"wrk.method = {_lua(request.method)}", f"wrk.body = {_lua(request.body)}"]
    lines += [f"wrk.headers[ {_lua(k)} ] = {_lua(v)}" for k, v in request.headers.items()]
    return "\n".join(lines) + "\n" + DONE


def run(request: Request, seconds: float, connections: int, threads: int = 2) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script(request))
    lua = Path(handle.name)
    wrk = shutil.which("wrk")
    assert wrk is not None, "check available() first"
    try:
        completed = subprocess.run(  # noqa: S603 - wrk with our own arguments
            [
                wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                str(lua),
                request.url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
    finally:
        lua.unlink()
    lines = [line for line in completed.stdout.splitlines() if line.startswith('{"requests"')]
    if not lines:
        raise RuntimeError(f"wrk printed no summary: {completed.stdout[-1000:]}")
    summary = json.loads(lines[-1])
    errors = summary["status_errors"] + summary["socket_errors"]
    samples = [f"wrk: {errors} non-2xx/3xx or socket errors"] if errors else []
    return WrkResult(
        requests=summary["requests"],
        errors=errors,
        seconds=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        error_samples=samples,
    )
