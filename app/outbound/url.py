"""The one parse of an outbound URL: what is checked is what is connected to.

Two URL parsers that disagree on where the host is are a server-side request forgery: with
``http://127.0.0.1:1\\@1.1.1.1/``, ``urllib.parse`` reads host ``1.1.1.1`` (public) while
urllib3, which ``requests`` uses, reads ``127.0.0.1`` and connects there. So an outbound URL is
parsed once, here, and every authority that two parsers (RFC 3986, the WHATWG URL standard,
``urllib.parse``, urllib3, the C library's ``inet_aton``) may read differently is refused
outright rather than interpreted: user information, backslashes, whitespace and control
characters, percent-encoding or non-ASCII in the host, IPv6 zone identifiers, and the
decimal, octal, hexadecimal and shortened IPv4 forms (``2130706433``, ``0x7f.1``, ``127.1``).
The URL handed to the HTTP client is rebuilt from this parse, and urllib3 must read the
rebuilt URL back to the same scheme, host and port, or the call is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from urllib3.util import parse_url

from app.outbound.errors import OutboundRefused

Address = IPv4Address | IPv6Address
DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME = re.compile(r"(https?)://", re.IGNORECASE)
_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f]|\s")  # controls and whitespace, anywhere
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_PORT = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True)
class Target:
    """Where a URL points, as idbridge reads it; ``url`` is what the HTTP client is given."""

    scheme: str
    host: str  # a lower-case name, or an IP address in its canonical text
    port: int
    url: str

    @property
    def literal(self) -> Address | None:
        """The host's address when the URL names one (no resolution needed)."""
        try:
            return ip_address(self.host)
        except ValueError:
            return None

    def same_place(self, url: str) -> bool:
        """Whether urllib3 reads ``url`` as this scheme, host and port (RFC 3986 §3.2)."""
        try:
            parts = parse_url(url)
        except ValueError:
            return False
        host = (parts.host or "").removeprefix("[").removesuffix("]").lower()
        port = parts.port or DEFAULT_PORTS.get(parts.scheme or "", 0)
        return (parts.scheme, host, port) == (self.scheme, self.host, self.port)


def parse(url: str) -> Target:
    """Read ``url`` once, or raise ``OutboundRefused`` saying what makes it ambiguous."""
    if _UNSAFE.search(url):
        raise OutboundRefused("must not contain whitespace or control characters")
    scheme = _SCHEME.match(url)
    if scheme is None:
        raise OutboundRefused("must be an absolute URL starting with http:// or https://")
    rest = url[scheme.end() :]
    # RFC 3986 §3.2: the authority ends at the first "/", "?" or "#"; WHATWG also ends it at
    # a backslash, which is why one is never accepted before the path.
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:].partition("#")[0]
    if "\\" in authority:
        raise OutboundRefused("must not contain a backslash before the path")
    if "@" in authority:
        raise OutboundRefused("must not contain user information (user@host)")
    if "%" in authority:
        raise OutboundRefused("must not contain percent-encoding in the host")
    if not authority.isascii():
        raise OutboundRefused("must have an ASCII host (write an international name as xn--...)")
    host, port_text = _split_authority(authority)
    host = _host(host)
    port = DEFAULT_PORTS[scheme.group(1).lower()]
    if port_text is not None:
        if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
            raise OutboundRefused("must have a port between 1 and 65535")
        port = int(port_text)
    shown = f"[{host}]" if ":" in host else host
    netloc = shown if port_text is None else f"{shown}:{port}"
    path = tail if tail.startswith("/") else "/" + tail
    name = scheme.group(1).lower()
    target = Target(name, host, port, f"{name}://{netloc}{path}")
    if not target.same_place(target.url):
        raise OutboundRefused("is read differently by the HTTP client")
    return target


def _split_authority(authority: str) -> tuple[str, str | None]:
    """(host, port text or None), IPv6 literals in brackets (RFC 3986 §3.2.2)."""
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise OutboundRefused("must have a well-formed [IPv6] host")
        try:
            IPv6Address(host)
        except ValueError:
            raise OutboundRefused("must have a well-formed [IPv6] host") from None
        return host, after[1:] if after else None
    host, colon, port = authority.partition(":")
    return host, port if colon else None


def _host(text: str) -> str:
    """The host in one canonical spelling; refuse what two resolvers may read differently."""
    host = text.lower()
    if not host:
        raise OutboundRefused("must name a host")
    if ":" in host:
        return IPv6Address(host).compressed
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):  # WHATWG reads it as IPv4: only a.b.c.d is sure
        try:
            canonical = str(IPv4Address(host))
        except ValueError:
            canonical = ""
        if canonical != host:
            raise OutboundRefused(f"{host} is not an IPv4 address in dotted-quad form (a.b.c.d)")
        return host
    if not _NAME.fullmatch(host):
        raise OutboundRefused(f"{host} is not a host name (letters, digits, '-', '_' and dots)")
    return host
