"""A ``requests`` transport that connects to the checked addresses and nowhere else.

urllib3 resolves a connection's host itself when it opens the socket: a second resolution,
after the check, that a rebinding DNS server can answer differently. Here the connection keeps
the URL's host name (so the ``Host`` header, TLS SNI and certificate verification all use the
name, RFC 9110 §7.2 and RFC 6125) but opens its socket to the addresses that were checked, in
their order, without asking any resolver again. The adapter refuses a request whose URL urllib3
reads as another scheme, host or port than the one checked, and never goes through a proxy
(a proxy would resolve the name itself).
"""

from __future__ import annotations

import socket
from typing import Any

from requests import PreparedRequest
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from app.outbound.errors import OutboundRefused
from app.outbound.url import Address, Target


class _Pinned:
    """Mixed into urllib3's connection classes: ``_new_conn`` opens the checked addresses."""

    host: str
    port: int
    timeout: Any
    source_address: tuple[str, int] | None
    socket_options: Any

    def __init__(self, *args: Any, addresses: tuple[Address, ...], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.addresses = addresses

    def _new_conn(self) -> socket.socket:
        error: Exception | None = None
        for address in self.addresses:
            try:
                return self._open(address)
            except TimeoutError as exc:
                message = f"Connection to {self.host} timed out ({self.timeout} s)"
                error = ConnectTimeoutError(self, message)
                error.__cause__ = exc
            except OSError as exc:
                error = NewConnectionError(self, f"Failed to establish a new connection: {exc}")
                error.__cause__ = exc
        assert error is not None  # there is always at least one checked address
        raise error

    def _open(self, address: Address) -> socket.socket:
        """A TCP connection to ``address`` (a literal: ``connect`` does no lookup)."""
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            for option in self.socket_options or ():
                sock.setsockopt(*option)
            if isinstance(self.timeout, int | float) or self.timeout is None:
                sock.settimeout(self.timeout)  # else urllib3's "default" sentinel: leave it
            if self.source_address:
                sock.bind(self.source_address)
            sock.connect((str(address), self.port))
        except BaseException:
            sock.close()
            raise
        return sock


class _PinnedHTTPConnection(_Pinned, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_Pinned, HTTPSConnection):
    pass


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class PinnedAdapter(HTTPAdapter):
    """For one call: every request it sends goes to ``target`` at ``addresses``."""

    def __init__(self, target: Target, addresses: tuple[Address, ...]) -> None:
        super().__init__()
        self.target = target
        self.addresses = addresses
        self._pools: list[HTTPConnectionPool] = []

    def get_connection_with_tls_context(
        self,
        request: PreparedRequest,
        verify: bool | str | None,
        proxies: dict[str, str] | None = None,
        cert: Any = None,
    ) -> HTTPConnectionPool:
        if not self.target.same_place(request.url or ""):
            raise OutboundRefused("the URL to send is not the URL that was checked")
        pool: HTTPConnectionPool
        if self.target.scheme == "https":
            _, tls = self.build_connection_pool_key_attributes(request, verify, cert)
            pool = _PinnedHTTPSPool(
                self.target.host, self.target.port, maxsize=1, addresses=self.addresses, **tls
            )
        else:
            pool = _PinnedHTTPPool(
                self.target.host, self.target.port, maxsize=1, addresses=self.addresses
            )
        self._pools.append(pool)
        return pool

    def request_url(self, request: PreparedRequest, proxies: Any) -> str:
        return request.path_url  # origin-form (RFC 9112 §3.2.1), never a proxy's absolute-form

    def close(self) -> None:
        for pool in self._pools:
            pool.close()
        super().close()
