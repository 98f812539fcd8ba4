"""``python -m bench``: token exchange throughput and latency next to a bare Flask endpoint.

What it measures, in one run on 127.0.0.1 only:

- **hello**: ``GET /`` of a bare Flask app answering ``{"ok": true}`` (``bench/hello.py``),
  the floor of what gunicorn + Flask cost;
- **exchange (cache hit)**: ``POST /t/bench/oauth/token`` (RFC 8693, ``client_secret_basic``)
  with one user's access token and one scope, so every request after the first per worker is
  served from the token cache (every check against the database still runs);
- **exchange (cache miss)**: the same with a different seeded user per request (never repeated
  in the run), so each request mints a new Snowflake token; the run checks that every answer
  carries a distinct token, i.e. that the cache really missed.

How: a temporary instance folder (SQLite by default, or ``--database-url`` for an empty
PostgreSQL database), an in-process JWKS server (``bench/idp.py``) minting RS256 access
tokens, a tenant / client / ``snowflake`` integration / grant and users with mappings seeded
through the storage layer (users bulk-inserted). idbridge runs as ``python -m app serve`` and
the baseline under gunicorn with the same ``app.server.gunicorn_options``. The load client
(``bench/load.py``) runs a fixed number of requests per round from keep-alive threads, with a
time cap, alternating the scenarios for each round. Every answer must be 200: errors are
counted and reported. Results go to stdout and to ``bench/results/`` (JSON and Markdown).
Every process started is stopped at the end.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from app.settings import Settings
from bench import seed
from bench.common import Process, describe_options, free_port, percentile, start
from bench.idp import BenchIdentityProvider
from bench.load import RoundResult, Send, run_round

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
WARMUP = 50


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=500, help="requests per round")
    parser.add_argument("--threads", type=int, default=8, help="client threads")
    parser.add_argument("--time-cap", type=float, default=30.0, help="seconds per round, at most")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of each server")
    parser.add_argument("--database-url", default="", help="an empty PostgreSQL database")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    miss_users = args.rounds * args.requests  # one fresh user per cache-miss request
    users = miss_users + WARMUP + 1
    client_secret = "cs_bench-" + secrets.token_urlsafe(32)
    secret_key = secrets.token_urlsafe(48)
    processes: list[Process] = []
    idp = BenchIdentityProvider().start()
    with tempfile.TemporaryDirectory(prefix="idbridge-bench-") as temp:
        folder = Path(temp)
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("IDBRIDGE_")}
            idbridge_env = env | {
                "IDBRIDGE_INSTANCE_PATH": str(folder / "instance"),
                "IDBRIDGE_SECRET_KEY": secret_key,
                "IDBRIDGE_ALLOW_PRIVATE_URLS": "1",
                "IDBRIDGE_LOG_LEVEL": "WARNING",
                # one client at full speed is what is measured, not what a limit refuses
                "IDBRIDGE_RATE_LIMIT_CLIENT": "",
                "IDBRIDGE_RATE_LIMIT_TENANT": "",
            }
            if args.database_url:
                idbridge_env["IDBRIDGE_DATABASE_URL"] = args.database_url
            settings = Settings.load(environ=idbridge_env)
            print(f"seeding {users} users with mappings ...", flush=True)
            seed.seed(settings, idp, client_secret, users)
            print(f"minting {users} access tokens ...", flush=True)
            tokens = [idp.access_token(seed.subject_of(i)) for i in range(users)]

            port = free_port()
            processes.append(
                start(
                    "idbridge",
                    ["app", "serve", "--port", str(port), "--workers", str(args.workers)],
                    idbridge_env,
                    f"http://127.0.0.1:{port}/readyz",
                    folder,
                )
            )
            hello_port = free_port()
            metrics = folder / "hello-metrics"
            metrics.mkdir()
            processes.append(
                start(
                    "hello",
                    ["bench.hello", "--port", str(hello_port), "--workers", str(args.workers)],
                    env | {"PROMETHEUS_MULTIPROC_DIR": str(metrics)},
                    f"http://127.0.0.1:{hello_port}/",
                    folder,
                )
            )
            return measure(args, port, hello_port, client_secret, tokens)
        finally:
            for process in reversed(processes):
                process.stop()
            idp.stop()


def measure(
    args: argparse.Namespace, port: int, hello_port: int, client_secret: str, tokens: list[str]
) -> int:
    token_url = f"http://127.0.0.1:{port}/t/{seed.TENANT}/oauth/token"
    basic = base64.b64encode(f"{seed.CLIENT_ID}:{client_secret}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}"}

    def exchange(token: str) -> Callable[[requests.Session], requests.Response]:
        form = {
            "grant_type": GRANT,
            "subject_token": token,
            "subject_token_type": ACCESS,
            "audience": seed.INTEGRATION,
            "scope": seed.SCOPE,
        }
        return lambda session: session.post(token_url, data=form, headers=headers, timeout=30)

    hit_token = tokens[-1]
    warm_tokens = tokens[-1 - WARMUP : -1]
    miss_round = [0]  # the round being run, so each cache-miss request takes a fresh user

    def send_hello(session: requests.Session, _index: int) -> requests.Response:
        return session.get(f"http://127.0.0.1:{hello_port}/", timeout=30)

    def send_hit(session: requests.Session, _index: int) -> requests.Response:
        return exchange(hit_token)(session)

    def send_miss(session: requests.Session, index: int) -> requests.Response:
        return exchange(tokens[miss_round[0] * args.requests + index])(session)

    def send_warm(session: requests.Session, index: int) -> requests.Response:
        return exchange(warm_tokens[index % WARMUP])(session)

    scenarios: list[tuple[str, Send]] = [
        ("hello", send_hello),
        ("exchange (cache hit)", send_hit),
        ("exchange (cache miss)", send_miss),
    ]
    warmup = [(send_hello, WARMUP), (send_hit, WARMUP), (send_warm, WARMUP)]
    for send, count in warmup:
        result = run_round(send, count, args.threads, args.time_cap)
        if result.errors:
            print(f"warm-up failed: {result.error_samples}", file=sys.stderr)
            return 1

    results: dict[str, list[RoundResult]] = {name: [] for name, _ in scenarios}
    for round_number in range(args.rounds):
        miss_round[0] = round_number
        for name, send in scenarios:
            keep = name != "hello"
            result = run_round(send, args.requests, args.threads, args.time_cap, keep)
            results[name].append(result)
            print(
                f"round {round_number + 1} {name}: {result.requests} requests, "
                f"{result.errors} errors, {result.rps:.0f} req/s",
                flush=True,
            )
    return report(args, results)


def distinct_tokens(rounds: list[RoundResult]) -> int:
    return len({json.loads(body)["access_token"] for r in rounds for body in r.bodies})


def report(args: argparse.Namespace, results: dict[str, list[RoundResult]]) -> int:
    hello_rps = statistics.median(r.rps for r in results["hello"])
    rows: list[dict[str, Any]] = []
    for name, rounds in results.items():
        latencies = [ms for r in rounds for ms in r.latencies_ms]
        rps = [r.rps for r in rounds]
        ok = sum(r.requests - r.errors for r in rounds)
        row: dict[str, Any] = {
            "scenario": name,
            "requests": sum(r.requests for r in rounds),
            "errors": sum(r.errors for r in rounds),
            "rps_median": statistics.median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "ratio_to_hello": statistics.median(rps) / hello_rps,
            "error_samples": [s for r in rounds for s in r.error_samples][:5],
        }
        if name != "hello":
            row["distinct_upstream_tokens"] = distinct_tokens(rounds)
            row["ok_answers"] = ok
        rows.append(row)
    miss = rows[2]
    miss_verified = miss["distinct_upstream_tokens"] == miss["ok_answers"]

    config = describe_options(args.workers)
    header = (
        f"gunicorn (both servers): {json.dumps(config)}\n"
        f"load: {args.rounds} rounds x {args.requests} requests per scenario, "
        f"{args.threads} client threads, time cap {args.time_cap:.0f} s per round; "
        f"database: {'PostgreSQL' if args.database_url else 'SQLite'}; "
        f"CPUs: {os.cpu_count()}"
    )
    lines = [
        "| scenario | req/s median (min-max) | p50 ms | p99 ms | vs hello | errors |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['scenario']} | {row['rps_median']:.0f} ({row['rps_min']:.0f}-"
            f"{row['rps_max']:.0f}) | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['ratio_to_hello']:.2f} | {row['errors']}/{row['requests']} |"
        )
    checks = (
        f"cache hit: {rows[1]['distinct_upstream_tokens']} distinct upstream tokens over "
        f"{rows[1]['ok_answers']} answers (at most one per worker); cache miss: "
        f"{miss['distinct_upstream_tokens']} distinct over {miss['ok_answers']} answers "
        f"({'every request missed' if miss_verified else 'SOME REQUESTS HIT THE CACHE'})"
    )
    table = "\n".join(lines)
    print(f"\n{header}\n\n{table}\n\n{checks}")
    for row in rows:
        for sample in row["error_samples"]:
            print(f"error in {row['scenario']}: {sample}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "when": stamp,
        "gunicorn": config,
        "load": {
            "rounds": args.rounds,
            "requests_per_round": args.requests,
            "threads": args.threads,
            "time_cap_s": args.time_cap,
        },
        "database": "postgresql" if args.database_url else "sqlite",
        "cpus": os.cpu_count(),
        "cache_miss_verified": miss_verified,
        "scenarios": rows,
    }
    (RESULTS / f"exchange-{stamp}.json").write_text(json.dumps(document, indent=2) + "\n")
    markdown = f"# Token exchange benchmark {stamp}\n\n{header}\n\n{table}\n\n{checks}\n"
    (RESULTS / f"exchange-{stamp}.md").write_text(markdown)
    print(f"\nwritten: bench/results/exchange-{stamp}.json and .md")
    failed = any(row["errors"] for row in rows) or not miss_verified
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
