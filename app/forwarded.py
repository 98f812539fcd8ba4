"""Forwarded headers, believed only from the reverse proxies named in ``IDBRIDGE_TRUSTED_PROXIES``.

``X-Forwarded-For`` and its siblings are plain request headers: anyone can send them. Behind a
proxy they are the only way to learn the caller's address (for the access log) and the
original scheme, so werkzeug's ``ProxyFix`` (one hop) applies them, but only to a request whose
TCP peer is a trusted proxy; from any other peer they change nothing. Issuer URLs, mail links
and SCIM locations never come from request headers at all: they are built from
``IDBRIDGE_PUBLIC_URL``. Gunicorn's own ``forwarded_allow_ips`` is switched off
(``app.server``) so this is the one place that decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import ip_address
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.settings import Settings


class TrustedProxyFix:
    """``ProxyFix`` for requests from the trusted networks; other requests pass unchanged."""

    def __init__(self, wsgi_app: Any, settings: Settings) -> None:
        self.plain = wsgi_app
        self.fixed = ProxyFix(wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)
        self.networks = settings.proxy_networks()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if self._trusted(environ.get("REMOTE_ADDR", "")):
            return self.fixed(environ, start_response)
        return self.plain(environ, start_response)

    def _trusted(self, peer: str) -> bool:
        try:
            address = ip_address(peer)
        except ValueError:  # a Unix socket peer, or none
            return False
        return any(address in network for network in self.networks)


def init_app(flask_app: Flask, settings: Settings) -> None:
    if settings.trusted_proxies:
        flask_app.wsgi_app = TrustedProxyFix(flask_app.wsgi_app, settings)  # type: ignore[method-assign]
