"""What the benchmark's readers rely on: wrk sends exactly the request it is given (a quoting
slip in the Lua script silently benchmarks a different request), and ratios compare runs of
the same load client."""

from __future__ import annotations

import json
import threading

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bench import wrk


@pytest.mark.skipif(not wrk.available(), reason="wrk is not installed")
def test_wrk_sends_the_method_headers_and_body_and_counts_refusals():
    seen: list[tuple[str, str, str]] = []

    @Request.application
    def answer(request: Request) -> Response:
        seen.append((request.method, request.headers.get("Authorization", ""), request.data))
        ok = request.headers.get("Authorization") == "Basic a2V5OnNlY3JldA=="
        return Response(json.dumps({"ok": ok}), status=200 if ok else 401)

    server = make_server("127.0.0.1", 0, answer, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/oauth/token"
    body = "grant_type=client_credentials&scope=a+b"
    try:
        good = wrk.run(
            wrk.Request("POST", url, {"Authorization": "Basic a2V5OnNlY3JldA=="}, body), 1, 2, 1
        )
        bad = wrk.run(wrk.Request("POST", url, {"Authorization": "Basic d3Jvbmc="}, body), 1, 2, 1)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert good.requests > 0 and good.errors == 0
    assert bad.requests > 0 and bad.errors == bad.requests  # non-2xx answers are errors
    assert seen[0] == ("POST", "Basic a2V5OnNlY3JldA==", body.encode())
    assert good.p50_ms <= good.p99_ms


def test_ratios_compare_runs_of_the_same_load_client():
    pytest.importorskip("authlib")  # bench.__main__ loads the peer (the `bench` extra)
    from bench.__main__ import add_ratios

    rows = [
        {"scenario": "hello", "client": "wrk", "rps_median": 1000.0},
        {"scenario": "hello", "client": "python", "rps_median": 400.0},
        {"scenario": "floor", "client": "wrk", "rps_median": 500.0},
        {"scenario": "floor", "client": "python", "rps_median": 200.0},
        {"scenario": "peer", "client": "wrk", "rps_median": 250.0},
        {"scenario": "exchange (cache hit)", "client": "wrk", "rps_median": 250.0},
        {"scenario": "webhook get (id)", "client": "python", "rps_median": 100.0},
    ]
    add_ratios(rows)
    hit, webhook = rows[-2], rows[-1]
    assert (hit["ratio_to_hello"], hit["ratio_to_floor"], hit["ratio_to_peer"]) == (
        0.25,
        0.5,
        1.0,
    )
    assert (webhook["ratio_to_hello"], webhook["ratio_to_floor"]) == (0.25, 0.5)
    assert "ratio_to_peer" not in webhook  # the peer is a token endpoint only
