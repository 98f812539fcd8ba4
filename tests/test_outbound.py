"""The outbound guard (``app.outbound``) checks what is actually called (THREATS.md, outbound).

A URL whose authority two parsers read differently is refused before any lookup or connection,
whatever ``IDBRIDGE_ALLOW_PRIVATE_URLS`` says; non-public addresses are refused unless allowed;
the host is resolved once and the connection goes to exactly the address that was checked,
with the name kept for ``Host``, TLS SNI and certificate verification. Every server here is on
127.0.0.0/8: a scripted address policy lets one loopback address stand in for a public server.
"""

from __future__ import annotations

import ast
import socket
import threading
import time
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app import outbound
from app.outbound.pinned import PinnedAdapter
from app.outbound.url import parse
from tests.outbound_support import CountingServer, ScriptedResolver, policy, tls_files

ROOT = Path(__file__).resolve().parent.parent
BACKSLASH = "http://127.0.0.9:{port}\\@1.1.1.1/"  # urllib.parse: 1.1.1.1; urllib3: 127.0.0.9
AMBIGUOUS = [
    BACKSLASH,
    "http://1.1.1.1\\@127.0.0.9:{port}/",
    "http://127.0.0.9:{port}\\/@1.1.1.1/",
    "http:\\\\127.0.0.9:{port}/",
    "http:/\\127.0.0.9:{port}/",
    "http:/127.0.0.9:{port}/",
    "http://user@127.0.0.9:{port}/",
    "http://1.1.1.1:80@127.0.0.9:{port}/",
    "http://127.0.0.9:{port}@1.1.1.1/",
    "http://127.0.0.9:{port}%2f@1.1.1.1/",
    "http://1.1.1.1%40127.0.0.9:{port}/",
    "http://127%2e0%2e0%2e9:{port}/",
    "http://127.0.0.9%2e:{port}/",
    "http://127.0.0.9:{port}\t/",
    "http://1.1.1.1\n@127.0.0.9:{port}/",
    "http://127.0.0.9:{port}/\r\nX-Injected: 1",
    " http://127.0.0.9:{port}/",
    "http://[::ffff:127.0.0.9%25lo]:{port}/",
    "http://[fe80::1%25lo]:{port}/",
    "http://[::ffff:127.0.0.9:{port}/",
    "http://2130706441:{port}/",
    "http://0x7f000009:{port}/",
    "http://0x7f.9:{port}/",
    "http://0177.0.0.9:{port}/",
    "http://127.9:{port}/",
    "http://127.0.9:{port}/",
    "http://127.0.0.9.:{port}/",
    "http://127\u30020\u30020\u30029:{port}/",  # ideographic full stops
    "http://:{port}/",
    "http://127.0.0.9:+{port}/",
    "http://127.0.0.9:{port}:{port}/",
    "http://127.0.0.9:99999/",
    "ftp://127.0.0.9:{port}/",
    "gopher://127.0.0.9:{port}/_GET",
    "file:///etc/passwd",
    "//127.0.0.9:{port}/",
]


@pytest.fixture
def counting() -> Iterator[CountingServer]:
    with CountingServer("127.0.0.9") as server:
        yield server


@pytest.fixture
def no_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused URL must not even be resolved: any lookup fails the test."""
    monkeypatch.setattr(outbound, "POLICY", policy())


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("template", AMBIGUOUS)
def test_an_ambiguous_url_is_refused_before_any_lookup_or_connection(
    counting, no_lookups, template, allow_private
):
    url = template.format(port=counting.port)
    with pytest.raises(outbound.OutboundRefused):
        outbound.request("GET", url, allow_private=allow_private, timeout=(1, 1))
    assert counting.connections == 0


def test_the_backslash_case_never_reaches_loopback_with_the_system_resolver(counting):
    """On the old guard this URL passed as public host 1.1.1.1 and reached 127.0.0.9."""
    with pytest.raises(outbound.OutboundRefused, match="backslash"):
        outbound.request("GET", BACKSLASH.format(port=counting.port), allow_private=False)
    assert counting.connections == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.9:{port}/",
        "http://[::ffff:127.0.0.9]:{port}/",
        "http://idp.test:{port}/",  # resolves to 127.0.0.9
        "http://mixed.test:{port}/",  # resolves to a "public" address and 127.0.0.9
    ],
)
def test_a_non_public_address_is_refused_unless_allowed(counting, monkeypatch, url):
    def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.2", "127.0.0.9"] if host == "mixed.test" else ["127.0.0.9"]

    monkeypatch.setattr(outbound, "POLICY", policy(resolver, public=["127.0.0.2"]))
    url = url.format(port=counting.port)
    with pytest.raises(outbound.OutboundRefused, match="IDBRIDGE_ALLOW_PRIVATE_URLS"):
        outbound.request("GET", url, allow_private=False)
    assert counting.connections == 0
    if "[" not in url:  # allowed, the same URL is called (IPv6 may be off on a test machine)
        assert outbound.request("GET", url, allow_private=True).json()["ok"] is True
        assert counting.connections == 1


def test_the_address_connected_to_is_the_address_checked(monkeypatch):
    """DNS rebinding: the first answer is public (127.0.0.2 stands in), any later one is
    loopback. One lookup, one connection, to the checked address, with the name as Host."""
    resolver = ScriptedResolver(["127.0.0.2"], ["127.0.0.1"])
    monkeypatch.setattr(outbound, "POLICY", policy(resolver, public=["127.0.0.2"]))
    system_lookups: list[object] = []
    checked, rebound = CountingServer.twins("127.0.0.2", "127.0.0.1")
    with checked, rebound, monkeypatch.context() as during:
        during.setattr(socket, "getaddrinfo", lambda *a, **k: system_lookups.append(a))
        url = f"http://rebind.test:{checked.port}/keys?x=1"
        response = outbound.request("GET", url, allow_private=False)
    assert response.status_code == 200
    assert (checked.connections, rebound.connections) == (1, 0)
    assert resolver.calls == [("rebind.test", checked.port)]
    assert system_lookups == []
    request_line, *headers = checked.heads[0].decode().split("\r\n")
    assert request_line == "GET /keys?x=1 HTTP/1.1"
    assert f"Host: rebind.test:{checked.port}" in headers


def test_the_checked_addresses_are_tried_in_order_and_no_other(monkeypatch):
    with CountingServer("127.0.0.2") as second:
        resolver = ScriptedResolver(["127.0.0.3", "127.0.0.2"], ["127.0.0.1"])
        public = ["127.0.0.2", "127.0.0.3"]
        monkeypatch.setattr(outbound, "POLICY", policy(resolver, public=public))
        url = f"http://two.test:{second.port}/"
        assert outbound.request("GET", url, allow_private=False).status_code == 200
    assert second.connections == 1 and len(resolver.calls) == 1


def test_tls_uses_the_host_name_for_sni_and_verification(tmp_path, monkeypatch):
    ca_file, context = tls_files(tmp_path, "idp.test")
    with CountingServer("127.0.0.4", tls=context) as server:
        resolver = ScriptedResolver(["127.0.0.4"])
        monkeypatch.setattr(outbound, "POLICY", policy(resolver, public=["127.0.0.4"]))
        url = f"https://idp.test:{server.port}/jwks"
        response = outbound.request("GET", url, allow_private=False, verify=str(ca_file))
        assert response.json()["ok"] is True
        assert server.server_names == ["idp.test"]
        assert f"Host: idp.test:{server.port}" in server.heads[0].decode()
        # the same server under another name: its certificate does not name it
        wrong = f"https://other.test:{server.port}/jwks"
        with pytest.raises(outbound.OutboundFailed, match="SSLError"):
            outbound.request("GET", wrong, allow_private=False, verify=str(ca_file))
        # and without the test CA, the certificate is not trusted at all
        with pytest.raises(outbound.OutboundFailed, match="SSLError"):
            outbound.request("GET", url, allow_private=False)
    assert resolver.calls == [
        ("idp.test", server.port),
        ("other.test", server.port),
        ("idp.test", server.port),
    ]


def test_a_name_that_does_not_resolve_fails_without_a_connection(monkeypatch):
    def resolver(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(outbound, "POLICY", policy(resolver))
    with pytest.raises(outbound.OutboundFailed, match=r"cannot resolve nowhere\.test"):
        outbound.request("GET", "https://nowhere.test/", allow_private=True)


def test_the_transport_refuses_a_request_for_another_place_than_the_checked_one(counting):
    """Defence in depth: whatever a caller passes to ``requests``, the pinned transport only
    sends to the scheme, host and port that were checked."""
    target = parse(counting.url())
    adapter = PinnedAdapter(target, (ip_address("127.0.0.9"),))
    with requests.Session() as session:
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        for elsewhere in (
            f"http://127.0.0.9:{counting.port + 1}/",
            counting.url().replace("http:", "https:"),
            "http://other.test/",
        ):
            with pytest.raises(outbound.OutboundRefused, match="not the URL that was checked"):
                session.get(elsewhere, timeout=1)
        assert session.get(counting.url("/x"), timeout=1).status_code == 200
    assert counting.connections == 1


# --- what stays: redirects unfollowed, timeouts, the size cap ------------------------------


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
    httpd.server_close()
    thread.join(timeout=5)


def test_allowed_private_calls_work_and_do_not_follow_redirects(server):
    assert outbound.request("GET", server + "/", allow_private=True).json() == {"ok": True}
    assert outbound.request("GET", server + "/redirect", allow_private=True).status_code == 302


def test_slow_and_oversized_answers_fail(server):
    with pytest.raises(outbound.OutboundFailed):
        outbound.request("GET", server + "/slow", allow_private=True, timeout=(1, 0.3))
    with pytest.raises(outbound.OutboundFailed, match="too large"):
        outbound.request("GET", server + "/big", allow_private=True)


# --- no way around the guard ----------------------------------------------------------------

HTTP_CLIENTS = ("requests", "urllib3", "urllib.request", "http.client", "httpx", "aiohttp")
CALLS = {"request", "get", "post", "put", "patch", "delete", "head", "options", "Session"}


def test_every_http_call_of_the_service_goes_through_the_guard():
    """Outside ``app/outbound/``, no module opens HTTP connections itself: ``requests`` is
    imported for the ``Response`` type only, and no other HTTP client is imported at all."""
    offenders = []
    for package in ("app", "admin", "oauth", "scim", "webhooks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "outbound" in path.relative_to(ROOT).parts[:2]:
                continue
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                if any(name in HTTP_CLIENTS[1:] or name.startswith("urllib3") for name in names):
                    offenders.append(f"{path.name}:{node.lineno} imports {names}")
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "requests"
                    and node.attr in CALLS
                ):
                    offenders.append(f"{path.name}:{node.lineno} calls requests.{node.attr}")
    assert offenders == []
