"""Every call idbridge makes to another server (JWKS, upstream token endpoints, IdP connectors).

``request`` is the only way out, so no caller can forget a guard:

- the URL is parsed once (``app.outbound.url``); an authority two parsers could read
  differently (user information, backslashes, whitespace, percent-encoding or non-ASCII in the
  host, numeric IPv4 forms other than a.b.c.d) is refused, and the HTTP client is given the URL
  rebuilt from that one parse;
- the host is resolved once and every address it gave must be public unless the operator sets
  ``IDBRIDGE_ALLOW_PRIVATE_URLS`` (``app.outbound.addresses``; server-side request forgery,
  OWASP ASVS 5.0 V12, RFC 9700 §4);
- the connection goes to exactly those addresses, with the name kept for ``Host``, TLS SNI and
  certificate verification (``app.outbound.pinned``): no second resolution, no proxy;
- redirects are never followed (a public URL cannot bounce to a private one); connect and read
  time out; a response body over the cap fails the call.

Written over ``requests`` (for preparing bodies and the ``Response`` callers read), which has
none of these policies of its own.
"""

from __future__ import annotations

from typing import Any

import requests

from app.outbound.addresses import AddressPolicy, check_configured_url, checked_addresses
from app.outbound.errors import OutboundFailed, OutboundRefused
from app.outbound.pinned import PinnedAdapter
from app.outbound.url import parse

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_RESPONSE_BYTES",
    "POLICY",
    "AddressPolicy",
    "OutboundFailed",
    "OutboundRefused",
    "check_configured_url",
    "request",
]

DEFAULT_TIMEOUT = (3.05, 5.0)  # (connect, read) seconds
MAX_RESPONSE_BYTES = 1024 * 1024
POLICY = AddressPolicy()  # the system resolver, public means is_global; tests swap it


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

    Raises ``OutboundRefused`` before any connection, ``OutboundFailed`` when the host cannot
    be resolved, on timeouts, connection and TLS errors and oversized bodies. HTTP error
    statuses are returned, not raised.
    """
    target = parse(url)
    addresses = checked_addresses(target, allow_private, POLICY)
    with requests.Session() as session:
        adapter = PinnedAdapter(target, addresses)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            with session.request(
                method, target.url, timeout=timeout, stream=True, allow_redirects=False, **kwargs
            ) as response:
                body = b""
                for chunk in response.iter_content(65536):
                    body += chunk
                    if len(body) > max_bytes:
                        raise OutboundFailed(f"response from {target.host} is too large")
                response._content = body  # what .json() and .text read
                return response
        except requests.RequestException as exc:
            raise OutboundFailed(f"{target.host}: {type(exc).__name__}") from exc
