"""Outbound calls: private addresses refused unless allowed, timeouts and size caps hold."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app import outbound


@pytest.fixture
def server() -> Iterator[str]:
    @Request.application
    def answer(request: Request) -> Response:
        if request.path == "/slow":
            time.sleep(1.5)
        if request.path == "/big":
            return Response(b"x" * (outbound.MAX_RESPONSE_BYTES + 10))
        if request.path == "/redirect":
            return Response(status=302, headers={"Location": "http://169.254.169.254/"})
        return Response('{"ok": true}', content_type="application/json")

    httpd = make_server("127.0.0.1", 0, answer, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=5)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost/x",
        "http://10.0.0.1/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest/meta-data",
        "http://192.168.1.1/",
    ],
)
def test_non_public_addresses_are_refused_by_default(url):
    with pytest.raises(outbound.OutboundRefused):
        outbound.check_url(url, allow_private=False)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/", "gopher://x"])
def test_other_schemes_are_refused_always(url):
    with pytest.raises(outbound.OutboundRefused):
        outbound.check_url(url, allow_private=True)


def test_allowed_private_calls_work_and_do_not_follow_redirects(server):
    assert outbound.request("GET", server + "/", allow_private=True).json() == {"ok": True}
    assert outbound.request("GET", server + "/redirect", allow_private=True).status_code == 302


def test_slow_and_oversized_answers_fail(server):
    with pytest.raises(outbound.OutboundFailed):
        outbound.request("GET", server + "/slow", allow_private=True, timeout=(1, 0.3))
    with pytest.raises(outbound.OutboundFailed, match="too large"):
        outbound.request("GET", server + "/big", allow_private=True)
