"""``python -m bench.scim``: SCIM throughput and latency of idbridge next to the scim2-server
reference server, at 1,000 / 10,000 / 100,000 users.

What it measures, on 127.0.0.1 only, for each user count: create (POST /Users), PATCH
(replace ``displayName``), ``eq`` filter on ``userName`` and on ``emails.value``, and paging
(``startIndex``/``count=50``). Both servers get the same requests for the same users
(``bench.scim_seed``), alternating idbridge and peer for each scenario and round (A B A B).
Every answer is checked: the expected status, a filter finds exactly the one user, a page holds
``count`` users from ``startIndex``, a created or patched user carries the values sent (the peer
answers a PATCH with 204, RFC 7644 §3.5.2, so only its status is checked). Wrong answers count
as errors.

idbridge runs as ``python -m app serve`` over an empty SQLite database (or ``--database-url``,
an empty PostgreSQL database), its users bulk-inserted through the storage layer between the
user counts. The peer runs ``bench.scim_peer`` (its own ``InMemoryStorage``) under the same
``app.server.gunicorn_options``, restarted for each user count and seeded in each worker at
start; a peer that does not start within ``bench.common.start``'s minute is left out and said
so. Every process started is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from app.settings import Settings
from bench import scim_seed
from bench.common import (
    Process,
    describe_options,
    free_port,
    idbridge_environment,
    percentile,
    start,
)
from bench.load import RoundResult, Send, run_round

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PAGE = 50
ROUNDS = 3
WARMUP = 20
TIME_CAP = 60.0
WRONG_ANSWER = 599  # the status a checked response gets when its body is not the expected one


@dataclass
class Target:
    """One server under test: its SCIM root, headers and gunicorn master."""

    name: str
    base: str
    headers: dict[str, str]
    process: Process
    patch_status: int  # idbridge answers PATCH with the resource (200), the peer with 204


def checked(
    response: requests.Response, status: int, check: Callable[[Any], bool]
) -> requests.Response:
    """Turn an answer into 200 (right) or an error status for ``run_round`` to count."""
    right = response.status_code == status
    if right and status != 204:  # a 204 has no body to check
        try:
            right = check(response.json())
        except (ValueError, KeyError, IndexError, TypeError):
            right = False
    if right:
        response.status_code = 200
    elif response.status_code in (200, status):
        response.status_code = WRONG_ANSWER
    return response


def one_user(index: int) -> Callable[[Any], bool]:
    def check(body: Any) -> bool:
        found = body["Resources"]
        return (
            body["totalResults"] == 1
            and len(found) == 1
            and found[0]["id"] == scim_seed.user_id(index)
        )

    return check


def scenarios(target: Target, users: int, round_number: int) -> dict[str, Send]:
    """The requests of one round against ``target``; user picks depend only on the scenario,
    the user count and the round, so both servers get the same ones."""
    rng = random.Random(f"{users}-{round_number}")  # noqa: S311 - reproducible picks
    picks = rng.choices(range(users - PAGE), k=10_000)
    base, headers = target.base, target.headers
    tag = f"{target.name}-{users}-{round_number}"

    def filter_on(attribute: str, value: Callable[[int], str]) -> Send:
        def send(session: requests.Session, i: int) -> requests.Response:
            index = picks[i]
            query = quote(f'{attribute} eq "{value(index)}"')
            response = session.get(f"{base}/Users?filter={query}", headers=headers, timeout=30)
            return checked(response, 200, one_user(index))

        return send

    def create(session: requests.Session, i: int) -> requests.Response:
        name = f"new-{tag}-{i}@example.com"
        body = {
            "schemas": [scim_seed.CORE_USER],
            "userName": name,
            "externalId": f"new-{tag}-{i}",
            "emails": [{"value": f"new-{tag}-{i}@example.org", "primary": True}],
        }
        response = session.post(f"{base}/Users", json=body, headers=headers, timeout=30)
        return checked(response, 201, lambda answer: answer["userName"] == name)

    def patch(session: requests.Session, i: int) -> requests.Response:
        index = picks[i]
        value = f"Renamed {tag}-{i}"
        body = {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "displayName", "value": value}],
        }
        url = f"{base}/Users/{scim_seed.user_id(index)}"
        response = session.patch(url, json=body, headers=headers, timeout=30)
        return checked(response, target.patch_status, lambda answer: answer["displayName"] == value)

    def page(session: requests.Session, i: int) -> requests.Response:
        first = picks[i] + 1

        def check(body: Any) -> bool:
            return (
                body["startIndex"] == first
                and len(body["Resources"]) == PAGE
                and body["totalResults"] >= users
            )

        url = f"{base}/Users?startIndex={first}&count={PAGE}"
        return checked(session.get(url, headers=headers, timeout=30), 200, check)

    return {
        "scim filter userName": filter_on("userName", scim_seed.user_name),
        "scim filter emails.value": filter_on("emails.value", scim_seed.email),
        "scim create": create,
        "scim patch": patch,
        "scim paging": page,
    }


def rss_mb_per_worker(process: Process) -> float:
    """The mean resident memory of the gunicorn workers (the master's children), from /proc."""
    pid = process.popen.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    sizes = []
    for child in children:
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return statistics.mean(sizes) if sizes else 0.0


def summary(rounds: list[RoundResult]) -> dict[str, Any]:
    latencies = [ms for r in rounds for ms in r.latencies_ms]
    rps = [r.rps for r in rounds]
    return {
        "requests": sum(r.requests for r in rounds),
        "errors": sum(r.errors for r in rounds),
        "rps_median": statistics.median(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "error_samples": [s for r in rounds for s in r.error_samples][:3],
    }


def measure(
    targets: list[Target], users: int, per_round: int, threads: int
) -> list[dict[str, Any]]:
    """Warm each server up, then ROUNDS rounds of every scenario, alternating the servers."""
    for target in targets:
        for send in scenarios(target, users, -1).values():
            run_round(send, WARMUP, threads, TIME_CAP)
    results: dict[str, dict[str, list[RoundResult]]] = {}
    for round_number in range(ROUNDS):
        sends = {target.name: scenarios(target, users, round_number) for target in targets}
        for scenario in sends[targets[0].name]:
            for target in targets:
                result = run_round(sends[target.name][scenario], per_round, threads, TIME_CAP)
                results.setdefault(scenario, {}).setdefault(target.name, []).append(result)
                print(
                    f"{users} users, round {round_number + 1}, {scenario}, {target.name}: "
                    f"{result.rps:.0f} req/s, {result.errors} errors",
                    flush=True,
                )
    rss = {target.name: rss_mb_per_worker(target.process) for target in targets}
    rows = []
    for scenario, by_target in results.items():
        row = {"scenario": scenario, "users": users} | summary(by_target["idbridge"])
        row["rss_mb_per_worker"] = rss["idbridge"]
        if "peer" in by_target:
            peer = summary(by_target["peer"])
            row |= {
                "peer_rps_median": peer["rps_median"],
                "peer_p50_ms": peer["p50_ms"],
                "peer_p99_ms": peer["p99_ms"],
                "peer_errors": peer["errors"],
                "peer_rss_mb_per_worker": rss["peer"],
                "ratio_to_peer": row["rps_median"] / peer["rps_median"],
            }
            row["error_samples"] += peer["error_samples"]
        rows.append(row)
    return rows


def run(
    *,
    quick: bool,
    database_url: str,
    redis_url: str,
    workers: int,
    threads: int,
    folder: Path,
) -> list[dict[str, Any]]:
    """Measure the SCIM scenarios at each user count; return one row per scenario and count."""
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    per_round = 100 if quick else 300
    token = "scim_bench_" + secrets.token_urlsafe(32)
    headers = {"Authorization": f"Bearer {token}"}
    peer_env = {k: v for k, v in os.environ.items() if not k.startswith("IDBRIDGE_")}
    idbridge_env = idbridge_environment(folder, database_url, redis_url)
    settings = Settings.load(environ=idbridge_env)
    scim_seed.create_tenant(settings, token)
    port = free_port()
    idbridge = start(
        "idbridge-scim",
        ["app", "serve", "--port", str(port), "--workers", str(workers)],
        idbridge_env,
        f"http://127.0.0.1:{port}/readyz",
        folder,
    )
    rows: list[dict[str, Any]] = []
    try:
        mine = Target(
            "idbridge",
            f"http://127.0.0.1:{port}/t/{scim_seed.TENANT}/scim/v2",
            headers,
            idbridge,
            200,
        )
        seeded = 0
        for users in sizes:
            scim_seed.add_users(settings, seeded, users)
            seeded = users
            targets = [mine]
            peer = start_peer(users, workers, token, peer_env, folder)
            try:
                if peer is not None:
                    base = f"http://127.0.0.1:{peer[1]}/v2"
                    targets.append(Target("peer", base, headers, peer[0], 204))
                rows += measure(targets, users, per_round, threads)
            finally:
                if peer is not None:
                    peer[0].stop()
    finally:
        idbridge.stop()
    return rows


def start_peer(
    users: int, workers: int, token: str, env: dict[str, str], folder: Path
) -> tuple[Process, int] | None:
    """The reference server seeded with ``users`` users, or None if it cannot seed in time."""
    port = free_port()
    metrics = folder / f"peer-metrics-{users}"
    metrics.mkdir()
    try:
        process = start(
            f"scim-peer-{users}",
            [
                "bench.scim_peer",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--users",
                str(users),
            ],
            env | {"BENCH_SCIM_TOKEN": token, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
            f"http://127.0.0.1:{port}/v2/ServiceProviderConfig",
            folder,
        )
    except RuntimeError as exc:
        print(f"peer left out at {users} users: {str(exc)[:300]}", flush=True)
        return None
    return process, port


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | users | req/s median (min-max) | p50 ms | p99 ms | errors | RSS MB/worker "
        "| peer req/s | peer p50 ms | vs peer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        peer = (
            f"{row['peer_rps_median']:.0f} | {row['peer_p50_ms']:.1f} | {row['ratio_to_peer']:.2f}"
            if "ratio_to_peer" in row
            else "not run | | "
        )
        lines.append(
            f"| {row['scenario']} | {row['users']:,} | {row['rps_median']:.0f} "
            f"({row['rps_min']:.0f}-{row['rps_max']:.0f}) | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {row['errors']}/{row['requests']} | "
            f"{row['rss_mb_per_worker']:.0f} | {peer} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scim", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="1,000 and 10,000 users, fewer requests"
    )
    parser.add_argument("--database-url", default="", help="an empty PostgreSQL database")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of each server")
    parser.add_argument("--threads", type=int, default=8, help="client threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="idbridge-bench-scim-") as temp:
        rows = run(
            quick=args.quick,
            database_url=args.database_url,
            redis_url=args.redis_url,
            workers=args.workers,
            threads=args.threads,
            folder=Path(temp),
        )
    print(
        f"\ngunicorn (both servers): {json.dumps(describe_options(args.workers))}\n"
        f"database: {'PostgreSQL' if args.database_url else 'SQLite'}; "
        f"{ROUNDS} rounds, {args.threads} client threads; CPUs: {os.cpu_count()}\n"
    )
    print(table(rows))
    for row in rows:
        for sample in row["error_samples"]:
            print(f"error in {row['scenario']} at {row['users']}: {sample}")
    return 1 if any(row["errors"] or row.get("peer_errors") for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
