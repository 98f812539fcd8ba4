"""Every call idbridge makes to another server (JWKS, upstream token endpoints, IdP connectors).

Three guards no caller can forget: a timeout on connect and read, a cap on the response size,
and a refusal of URLs that resolve to loopback, private, link-local or otherwise non-public
addresses (server-side request forgery, OWASP ASVS V12 / RFC 9700 §4.x) unless the operator
sets ``IDBRIDGE_ALLOW_PRIVATE_URLS`` (tests and the demo do). Written as a thin layer over
``requests`` because it has no such policy of its own. The host's addresses are checked just
before the call (a DNS answer that changes in between is not caught: pin resolvers in
production) and redirects are never followed, so a public URL cannot bounce to a private one.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import requests

DEFAULT_TIMEOUT = (3.05, 5.0)  # (connect, read) seconds
MAX_RESPONSE_BYTES = 1024 * 1024


class OutboundRefused(Exception):
    """The URL may not be called (scheme, or an address the deployment does not allow)."""


class OutboundFailed(Exception):
    """The other server could not be reached, was too slow, or answered too much."""


def check_url(url: str, allow_private: bool) -> None:
    """Refuse non-http(s) URLs, and non-public addresses unless ``allow_private``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise OutboundFailed(f"cannot resolve {parts.hostname}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise OutboundRefused(
                f"{parts.hostname} resolves to a non-public address; set "
                "IDBRIDGE_ALLOW_PRIVATE_URLS to allow it"
            )


def request(
    method: str,
    url: str,
    *,
    allow_private: bool,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    max_bytes: int = MAX_RESPONSE_BYTES,
    **kwargs: Any,
) -> requests.Response:
    """``requests.request`` with the guards above; redirects are not followed.

    Raises ``OutboundRefused`` before any connection, ``OutboundFailed`` on timeouts,
    connection errors and oversized bodies. HTTP error statuses are returned, not raised.
    """
    check_url(url, allow_private)
    try:
        with requests.request(
            method, url, timeout=timeout, stream=True, allow_redirects=False, **kwargs
        ) as response:
            body = b""
            for chunk in response.iter_content(65536):
                body += chunk
                if len(body) > max_bytes:
                    raise OutboundFailed(f"response from {urlsplit(url).hostname} is too large")
            response._content = body  # what .json() and .text read
            return response
    except requests.RequestException as exc:
        raise OutboundFailed(f"{urlsplit(url).hostname}: {type(exc).__name__}") from exc
