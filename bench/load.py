"""A bounded load client: threads with keep-alive ``requests.Session``s, a fixed number of
requests per round and a time cap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from bench.common import percentile

# (session, request index within the round) -> response
Send = Callable[[requests.Session, int], requests.Response]


@dataclass
class RoundResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    bodies: list[str] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)


def run_round(
    send: Send, total: int, threads: int, time_cap: float, keep_bodies: bool = False
) -> RoundResult:
    lock = threading.Lock()
    next_index = 0
    latencies: list[float] = []
    bodies: list[str] = []
    error_samples: list[str] = []
    errors = 0
    deadline = time.monotonic() + time_cap

    def worker() -> None:
        nonlocal next_index, errors
        with requests.Session() as session:
            while time.monotonic() < deadline:
                with lock:
                    index = next_index
                    next_index += 1
                if index >= total:
                    return
                started = time.perf_counter()
                try:
                    response = send(session, index)
                    ok, detail = response.status_code == 200, f"{response.status_code}"
                    text = response.text
                except requests.RequestException as exc:
                    ok, detail, text = False, type(exc).__name__, ""
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)
                    if not ok:
                        errors += 1
                        if len(error_samples) < 5:
                            error_samples.append(f"{detail} {text[:200]}")
                    elif keep_bodies:
                        bodies.append(text)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    seconds = time.perf_counter() - started
    return RoundResult(len(latencies), errors, seconds, latencies, bodies, error_samples)
