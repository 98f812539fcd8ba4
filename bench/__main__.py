"""``python -m bench``: idbridge's throughput and latency next to its floor and its peer.

Servers, all under the same gunicorn configuration (``app.server.gunicorn_options``, printed)
on 127.0.0.1 and stopped at the end:

- **hello**: ``GET /`` of a bare Flask app (``bench/hello.py``): what gunicorn + Flask cost;
- **floor**: ``GET /users/<pk>`` verifying the same subject JWT with PyJWT and reading one
  row by primary key from the same database (``bench/floor.py``): what no exchange can avoid;
- **peer**: Authlib's token endpoint, client credentials + ``client_secret_basic``, on the
  same database kind (``bench/authlib_peer.py``);
- **idbridge** (``python -m app serve``), measured on: token exchange cache hit (one user,
  one scope: served from the token cache, every database check still runs); cache miss (a
  different seeded user per request, so each mints a Snowflake token; checked: every answer
  carries a distinct token); the mapping query; userinfo; the webhook ``get`` by id and by
  email (Standard Webhooks signatures, a fresh ``webhook-id`` per request); and
  ``idbridge mappings import`` of 100,000 rows, timed as a command.

Load: wrk (Debian package ``wrk``) for requests that never change, the bounded Python client
(``bench/load.py``) for those that must differ per request (cache miss, webhooks); hello and
floor run under both, and every ratio compares runs of the same client. Each round runs
every baseline and every scenario in turn (A B A B), several rounds; medians and min-max.
Then ``bench.scim.run`` adds the SCIM rows. Output: printed tables,
JSON + Markdown + one PNG chart under ``bench/results/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from standardwebhooks import Webhook

from app.settings import Settings
from bench import authlib_peer, chart, scim, seed, wrk
from bench.common import (
    Process,
    children,
    describe_options,
    free_port,
    idbridge_environment,
    start,
    worker_rss_mb,
)
from bench.idp import AUDIENCE, BenchIdentityProvider
from bench.load import Send, run_round

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
FORM = "application/x-www-form-urlencoded"
WARMUP = 50
IMPORT_ROWS = 100_000
PYTHON, WRK = "python", "wrk"
HIT, MISS = "exchange (cache hit)", "exchange (cache miss)"
BASELINES = ("hello", "floor", "peer")

# (scenario, baseline, at least): the targets, ratios of the same run and client.
TARGETS = [
    (HIT, "floor", 0.8),
    (MISS, "floor", 0.6),
    (HIT, "peer", 1.0),
    ("webhook get (id)", "floor", 0.8),
    ("webhook get (email)", "floor", 0.8),
    ("userinfo", "floor", 0.8),
]
IMPORT_TARGET_S = 30.0
SCIM_GROWTH_TARGET = 1.5  # p50 at 100,000 users within 1.5 x p50 at 1,000
SCIM_PEER_USERS = 10_000


@dataclass
class Mode:
    rounds: int
    seconds: float  # per wrk round
    requests: int  # per Python-client round


QUICK = Mode(rounds=3, seconds=3, requests=300)
FULL = Mode(rounds=5, seconds=8, requests=1000)


@dataclass
class Scenario:
    name: str
    server: str  # which server answers: for the memory column
    client: str
    request: wrk.Request | None = None  # the fixed request (wrk)
    send: Send | None = None  # per-request sender (Python client)
    keep_bodies: bool = False
    before_round: Callable[[int], None] | None = None  # told the round number first


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 short rounds (a few minutes)")
    parser.add_argument("--database-url", default="", help="an empty PostgreSQL database")
    parser.add_argument("--redis-url", default="", help="Redis for idbridge's shared caches")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server")
    parser.add_argument("--threads", type=int, default=8, help="client connections")
    parser.add_argument("--time-cap", type=float, default=60.0, help="s per Python round, max")
    parser.add_argument("--python-only", action="store_true", help="do not use wrk")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy record one idbridge worker during each idbridge scenario's first round",
    )
    parser.add_argument(
        "--only", action="append", default=[], help="this scenario only (and the baselines)"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    mode = QUICK if args.quick else FULL
    use_wrk = wrk.available() and not args.python_only
    started = time.monotonic()
    database = "postgresql" if args.database_url else "sqlite"
    with tempfile.TemporaryDirectory(prefix="idbridge-bench-") as temp:
        folder = Path(temp)
        rows, imported, config = run_exchange_side(args, mode, use_wrk, folder)
        hello = {row["client"]: row["rps_median"] for row in rows if row["scenario"] == "hello"}
        scim_rows = [] if args.only else run_scim(args, folder / "scim", hello)
    rows += scim_rows
    minutes = (time.monotonic() - started) / 60
    return report(args, mode, database, config, rows, imported, minutes)


def run_exchange_side(
    args: argparse.Namespace, mode: Mode, use_wrk: bool, folder: Path
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    miss_users = mode.rounds * mode.requests  # one fresh user per cache-miss request
    users = miss_users + WARMUP + 1
    client_secret = "cs_bench-" + secrets.token_urlsafe(32)
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDBRIDGE_")}
    idbridge_env = idbridge_environment(folder, args.database_url, args.redis_url)
    settings = Settings.load(environ=idbridge_env)
    peer_url = args.database_url or f"sqlite:///{folder / 'authlib-peer.db'}"
    if peer_url.startswith("postgresql://"):
        peer_url = peer_url.replace("postgresql://", "postgresql+psycopg://", 1)
    processes: dict[str, Process] = {}
    idp = BenchIdentityProvider().start()
    try:
        print(f"seeding {users} users with mappings ...", flush=True)
        seed.seed(settings, idp, client_secret, users, webhook_secret)
        authlib_peer.seed(peer_url, seed.CLIENT_ID, client_secret, seed.SCOPE)
        print(f"minting {users} access tokens ...", flush=True)
        tokens = [idp.access_token(seed.subject_of(i)) for i in range(users)]
        workers = str(args.workers)
        ports = {name: free_port() for name in ("idbridge", "hello", "floor", "peer")}
        metrics = folder / "baseline-metrics"
        metrics.mkdir()
        baseline_env = env | {"PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        servers = {
            "idbridge": (["app", "serve"], idbridge_env, "/readyz"),
            "hello": (["bench.hello"], baseline_env, "/"),
            "floor": (
                [
                    "bench.floor",
                    "--database-url",
                    settings.database_url,
                    "--issuer",
                    idp.issuer,
                    "--jwks-uri",
                    idp.jwks_uri,
                    "--audience",
                    AUDIENCE,
                ],
                baseline_env,
                "/users/0",  # 401: up; readiness below accepts any answer
            ),
            "peer": (
                ["bench.authlib_peer", "--database-url", peer_url],
                baseline_env,
                authlib_peer.PATH,
            ),
        }
        for name, (command, server_env, ready) in servers.items():
            port = str(ports[name])
            processes[name] = start(
                name,
                [*command, "--port", port, "--workers", workers],
                server_env,
                f"http://127.0.0.1:{port}{ready}",
                folder,
                ready_status=None if name in ("floor", "peer") else 200,
            )
        scenarios = build_scenarios(
            ports, client_secret, webhook_secret, tokens, mode, use_wrk, args.only
        )
        worker = int(children(processes["idbridge"].popen.pid)[0])
        results = measure(args, mode, scenarios, worker)
        memory = {name: worker_rss_mb(p.popen.pid) for name, p in processes.items()}
        rows = summarise(scenarios, results, memory)
        for name, process in list(processes.items()):
            process.stop()
            del processes[name]
        imported = time_import(idbridge_env, folder) if not args.only else {}
    finally:
        for process in reversed(processes.values()):
            process.stop()
        idp.stop()
    config = describe_options(args.workers)
    return rows, imported, config


def build_scenarios(
    ports: dict[str, int],
    client_secret: str,
    webhook_secret: str,
    tokens: list[str],
    mode: Mode,
    use_wrk: bool,
    only: list[str],
) -> list[Scenario]:
    base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    tenant = f"{base['idbridge']}/t/{seed.TENANT}"
    basic = "Basic " + base64.b64encode(f"{seed.CLIENT_ID}:{client_secret}".encode()).decode()
    hit_token = tokens[-1]

    def exchange_form(token: str) -> str:
        return urlencode(
            {
                "grant_type": GRANT,
                "subject_token": token,
                "subject_token_type": ACCESS,
                "audience": seed.INTEGRATION,
                "scope": seed.SCOPE,
            }
        )

    fixed = {
        "hello": wrk.Request("GET", base["hello"] + "/"),
        "floor": wrk.Request(
            "GET", base["floor"] + "/users/1", {"Authorization": f"Bearer {hit_token}"}
        ),
        "peer": wrk.Request(
            "POST",
            base["peer"] + authlib_peer.PATH,
            {"Authorization": basic, "Content-Type": FORM},
            urlencode({"grant_type": "client_credentials", "scope": seed.SCOPE}),
        ),
        HIT: wrk.Request(
            "POST",
            tenant + "/oauth/token",
            {"Authorization": basic, "Content-Type": FORM},
            exchange_form(hit_token),
        ),
        "mapping query": wrk.Request(
            "GET",
            tenant
            + "/oauth/mappings?"
            + urlencode({"integration": seed.INTEGRATION, "subject": seed.subject_of(0)}),
            {"Authorization": basic},
        ),
        "userinfo": wrk.Request(
            "GET", tenant + "/oidc/userinfo", {"Authorization": f"Bearer {hit_token}"}
        ),
    }
    servers = {"hello": "hello", "floor": "floor", "peer": "peer"}

    def replay(request: wrk.Request) -> Send:
        def send(session: requests.Session, _index: int) -> requests.Response:
            return session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body or None,
                timeout=30,
            )

        return send

    miss_round = [0]  # the round being run, so each cache-miss request takes a fresh user

    def send_miss(session: requests.Session, index: int) -> requests.Response:
        token = tokens[miss_round[0] * mode.requests + index]
        headers = {"Authorization": basic, "Content-Type": FORM}
        return session.post(tenant + "/oauth/token", data=exchange_form(token), headers=headers)

    webhook = Webhook(webhook_secret)

    def send_webhook(body_of: Callable[[int], dict[str, str]]) -> Send:
        def send(session: requests.Session, index: int) -> requests.Response:
            body = json.dumps(body_of(index))
            message_id = "msg_" + uuid.uuid4().hex  # fresh: a repeated id replays the answer
            now = datetime.now(UTC)
            headers = {
                "Content-Type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": webhook.sign(message_id, now, body),
            }
            return session.post(tenant + "/webhooks/users/get", data=body, headers=headers)

        return send

    def by_id(index: int) -> dict[str, str]:
        return {"id": seed.subject_of(index % len(tokens))}

    def by_email(index: int) -> dict[str, str]:
        return {"email": f"{seed.subject_of(index % len(tokens))}@example.com"}

    scenarios: list[Scenario] = []
    for name, request in fixed.items():
        server = servers.get(name, "idbridge")
        if use_wrk:
            scenarios.append(Scenario(name, server, WRK, request=request, send=replay(request)))
        if name in ("hello", "floor") or not use_wrk:
            scenarios.append(Scenario(name, server, PYTHON, send=replay(request)))
    scenarios += [
        Scenario(MISS, "idbridge", PYTHON, send=send_miss, keep_bodies=True),
        Scenario("webhook get (id)", "idbridge", PYTHON, send=send_webhook(by_id)),
        Scenario("webhook get (email)", "idbridge", PYTHON, send=send_webhook(by_email)),
    ]
    scenarios[-3].before_round = lambda number: miss_round.__setitem__(0, number)
    if only:
        scenarios = [s for s in scenarios if s.name in (*BASELINES, *only)]
    return scenarios


def measure(
    args: argparse.Namespace, mode: Mode, scenarios: list[Scenario], worker: int
) -> dict[int, list[Any]]:
    """Warm every scenario up (all answers must be 200), then the rounds, A B A B."""
    for scenario in scenarios:
        if scenario.name == MISS:
            continue  # its users are counted out exactly; the hit warm-up covers the path
        assert scenario.send is not None
        result = run_round(scenario.send, WARMUP, args.threads, args.time_cap)
        if result.errors:
            raise RuntimeError(f"warm-up of {scenario.name}: {result.error_samples}")
    results: dict[int, list[Any]] = {i: [] for i in range(len(scenarios))}
    for round_number in range(mode.rounds):
        for i, scenario in enumerate(scenarios):
            result: Any
            profile = args.profile and round_number == 0 and scenario.server == "idbridge"
            with profiling(worker, scenario.name) if profile else contextlib.nullcontext():
                result = run_one(args, mode, scenario, round_number)
            results[i].append(result)
            print(
                f"round {round_number + 1}/{mode.rounds} {scenario.name} [{scenario.client}]: "
                f"{result.rps:.0f} req/s, {result.errors} errors",
                flush=True,
            )
    return results


def run_one(args: argparse.Namespace, mode: Mode, scenario: Scenario, round_number: int) -> Any:
    if scenario.client == WRK:
        assert scenario.request is not None
        return wrk.run(scenario.request, mode.seconds, args.threads)
    assert scenario.send is not None
    if scenario.before_round:
        scenario.before_round(round_number)
    return run_round(
        scenario.send, mode.requests, args.threads, args.time_cap, scenario.keep_bodies
    )


@contextlib.contextmanager
def profiling(pid: int, scenario: str) -> Iterator[None]:
    """py-spy (the ``bench`` extra) samples one worker, waiting time included (``--idle``),
    while the block runs; the collapsed stacks go to ``bench/results/profile-*.txt``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in scenario).strip("-")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"profile-{slug}-{stamp}.txt"
    spy_path = str(Path(sys.executable).parent / "py-spy")
    options = ["--pid", str(pid), "--idle", "--rate", "200", "--nonblocking", "--format", "raw"]
    spy = subprocess.Popen(  # noqa: S603 - py-spy from this environment, our arguments
        [spy_path, "record", *options, "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on interrupt
        spy.wait(timeout=30)
        print(f"profile: {out.relative_to(ROOT)}", flush=True)


def summarise(
    scenarios: list[Scenario], results: dict[int, list[Any]], memory: dict[str, float]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, scenario in enumerate(scenarios):
        rounds = results[i]
        rps = [r.rps for r in rounds]
        row: dict[str, Any] = {
            "scenario": scenario.name,
            "client": scenario.client,
            "requests": sum(r.requests for r in rounds),
            "errors": sum(r.errors for r in rounds),
            "rps_median": statistics.median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "p50_ms": statistics.median(r.p50_ms for r in rounds),
            "p99_ms": statistics.median(r.p99_ms for r in rounds),
            "rss_mb_per_worker": memory[scenario.server],
            "error_samples": [s for r in rounds for s in r.error_samples][:5],
        }
        if scenario.keep_bodies:
            ok = sum(len(r.bodies) for r in rounds)
            distinct = len({json.loads(b)["access_token"] for r in rounds for b in r.bodies})
            row["every_request_missed"] = ok == distinct and ok > 0
        rows.append(row)
    add_ratios(rows)
    return rows


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Ratios to hello, floor and peer measured with the same load client."""
    medians = {(r["scenario"], r["client"]): r["rps_median"] for r in rows}
    for row in rows:
        baselines = ["hello", "floor"]
        if row["scenario"].startswith("exchange"):
            baselines.append("peer")  # the token endpoint is the one with a peer here
        for baseline in baselines:
            median = medians.get((baseline, row["client"]))
            if median and row["scenario"] != baseline:
                row[f"ratio_to_{baseline}"] = row["rps_median"] / median


def time_import(env: dict[str, str], folder: Path) -> dict[str, Any]:
    """``idbridge mappings import`` of IMPORT_ROWS new rows, timed as a command."""
    path = folder / "mappings.csv"
    with path.open("w") as out:
        out.write("user_id,upstream_subject\n")
        for i in range(IMPORT_ROWS):
            out.write(f"imp{i:07d},LOGIN_IMP{i:07d}\n")
    started = time.perf_counter()
    command = ["app", "mappings", "import", seed.TENANT, seed.IMPORT_INTEGRATION, str(path)]
    completed = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - started
    out = completed.stdout.strip().splitlines()
    print(f"mappings import of {IMPORT_ROWS} rows: {seconds:.1f} s, {out[-1:]}", flush=True)
    return {
        "rows": IMPORT_ROWS,
        "seconds": seconds,
        "exit_code": completed.returncode,
        "output": (out or completed.stderr.strip().splitlines())[-1:],
    }


def run_scim(
    args: argparse.Namespace, folder: Path, hello: dict[str, float]
) -> list[dict[str, Any]]:
    """The SCIM benchmarks (``bench/scim.py``), with ratios to the hello of the same client."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = scim.run(
        quick=args.quick,
        database_url=args.database_url,
        redis_url=args.redis_url,
        workers=args.workers,
        threads=args.threads,
        folder=folder,
    )
    for row in rows:
        row.setdefault("client", PYTHON)
        median = hello.get(row["client"]) or hello.get(PYTHON)
        if median:
            row["ratio_to_hello"] = row["rps_median"] / median
    return rows


def targets(
    rows: list[dict[str, Any]], imported: dict[str, Any], database: str
) -> list[tuple[str, bool, str]]:
    """(target, met, the figure) for each target of the issue this run can judge."""
    found = {(r["scenario"], r["client"]): r for r in rows if "users" not in r}
    out: list[tuple[str, bool, str]] = []
    for scenario, baseline, least in TARGETS:
        for client in (WRK, PYTHON):
            row = found.get((scenario, client))
            if row and f"ratio_to_{baseline}" in row:
                ratio = row[f"ratio_to_{baseline}"]
                out.append(
                    (f"{scenario} >= {least} x {baseline}", ratio >= least, f"{ratio:.2f} x")
                )
                break
    if database == "sqlite" and imported:
        seconds = imported["seconds"]
        ok = seconds < IMPORT_TARGET_S and imported["exit_code"] == 0
        out.append((f"{IMPORT_ROWS:,}-row mapping import < 30 s", ok, f"{seconds:.1f} s"))
    filters: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if "users" in row and row["scenario"].startswith("scim filter"):
            filters.setdefault(row["scenario"], []).append(row)
    for name, group in filters.items():
        by_users = {row["users"]: row for row in group}
        smallest, largest = min(by_users), max(by_users)
        if smallest < largest:
            growth = by_users[largest]["p50_ms"] / by_users[smallest]["p50_ms"]
            out.append(
                (
                    f"{name} p50 at {largest:,} users <= {SCIM_GROWTH_TARGET} x at {smallest:,}",
                    growth <= SCIM_GROWTH_TARGET,
                    f"{growth:.2f} x",
                )
            )
        peer = by_users.get(SCIM_PEER_USERS, {}).get("ratio_to_peer")
        if peer is not None:
            out.append(
                (
                    f"{name} at {SCIM_PEER_USERS:,} users >= 1.0 x scim2-server",
                    peer >= 1.0,
                    f"{peer:.2f} x",
                )
            )
    return out


def _ratio(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.2f}" if key in row else "-"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | users | client | req/s median (min-max) | p50 ms | p99 ms | vs hello "
        "| vs floor | vs peer | RSS MB/worker | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['scenario']} | {row.get('users', '-')} | {row.get('client', PYTHON)} "
            f"| {row['rps_median']:.0f} ({row['rps_min']:.0f}-{row['rps_max']:.0f}) "
            f"| {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {_ratio(row, 'ratio_to_hello')} "
            f"| {_ratio(row, 'ratio_to_floor')} | {_ratio(row, 'ratio_to_peer')} "
            f"| {row['rss_mb_per_worker']:.0f} | {row['errors']}/{row['requests']} |"
        )
    return "\n".join(lines)


def report(
    args: argparse.Namespace,
    mode: Mode,
    database: str,
    config: dict[str, Any],
    rows: list[dict[str, Any]],
    imported: dict[str, Any],
    minutes: float,
) -> int:
    clients = sorted({row.get("client", PYTHON) for row in rows})
    header = (
        f"gunicorn (every server): {json.dumps(config)}\n"
        f"load: {'quick' if args.quick else 'full'}, {mode.rounds} rounds per scenario, "
        f"A B A B; wrk {mode.seconds:.0f} s per round, Python client {mode.requests} requests "
        f"per round (time cap {args.time_cap:.0f} s); {args.threads} connections; "
        f"clients used: {', '.join(clients)}\n"
        f"database: {database}; redis: {'yes' if args.redis_url else 'no'}; "
        f"CPUs: {os.cpu_count()}; run took {minutes:.1f} min"
    )
    checks = [
        f"{row['scenario']}: "
        + ("every request missed the cache" if row["every_request_missed"] else "SOME HIT")
        for row in rows
        if "every_request_missed" in row
    ]
    imported_line = (
        f"idbridge mappings import of {imported['rows']:,} rows: {imported['seconds']:.1f} s "
        f"(exit {imported['exit_code']}: {' '.join(imported['output'])})"
        if imported
        else "idbridge mappings import: not run (--only)"
    )
    judged = targets(rows, imported, database)
    target_lines = [
        f"- [{'met' if met else 'MISSED'}] {name}: {figure}" for name, met, figure in judged
    ]
    body = (
        f"{header}\n\n{table(rows)}\n\n{imported_line}\n"
        + "\n".join(checks)
        + "\n\ntargets:\n"
        + "\n".join(target_lines)
    )
    print("\n" + body)
    for row in rows:
        for sample in row.get("error_samples", []):
            print(f"error in {row['scenario']}: {sample}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = RESULTS / f"bench-{database}-{stamp}"
    document = {
        "when": stamp,
        "gunicorn": config,
        "mode": "quick" if args.quick else "full",
        "load": vars(mode) | {"connections": args.threads, "time_cap_s": args.time_cap},
        "database": database,
        "redis": bool(args.redis_url),
        "cpus": os.cpu_count(),
        "scenarios": rows,
        "mappings_import": imported,
        "targets": [{"target": n, "met": m, "figure": f} for n, m, f in judged],
    }
    stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
    title = f"# idbridge benchmark, {database}, {stamp}\n\n"
    stem.with_suffix(".md").write_text(title + body + "\n")
    written = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    try:
        chart.write(rows, f"idbridge, {database}, {stamp}", stem.with_suffix(".png"))
        written.append(stem.with_suffix(".png"))
    except ImportError:
        print("no chart: matplotlib is not installed (pip install -e '.[bench]')")
    print("\nwritten: " + ", ".join(str(p.relative_to(ROOT)) for p in written))
    failed = any(row["errors"] for row in rows) or not all(
        row["every_request_missed"] for row in rows if "every_request_missed" in row
    )
    return 1 if failed or imported.get("exit_code") else 0


if __name__ == "__main__":
    sys.exit(main())
