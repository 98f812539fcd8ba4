"""The benchmark's wrk runner sends exactly the request it is given: method, headers and body
(a quoting slip in the Lua script silently benchmarks a different request)."""

from __future__ import annotations

import json
import threading

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bench import wrk

pytestmark = pytest.mark.skipif(not wrk.available(), reason="wrk is not installed")


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
