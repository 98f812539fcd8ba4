"""Which addresses an outbound call may reach: resolved once, every one checked.

A host name is resolved exactly once per call; the addresses it gave are checked and are the
only ones connected to (``app.outbound.pinned``), so a DNS answer that changes between the
check and the connection (rebinding) changes nothing. Unless the operator allows private URLs,
every address must be public (``is_global``; an IPv4-mapped IPv6 address is judged as the IPv4
address it carries), or the call is refused (OWASP ASVS 5.0 V12 server-side request forgery).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address

from app.outbound.errors import OutboundFailed, OutboundRefused
from app.outbound.url import Address, Target, parse

ALLOW_HINT = "set IDBRIDGE_ALLOW_PRIVATE_URLS to allow it"
Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """The host's TCP addresses from the system resolver, in its order of preference."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def is_public(address: Address) -> bool:
    """Whether ``address`` is globally reachable (not loopback, private, link-local, ...)."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global


@dataclass(frozen=True)
class AddressPolicy:
    """How a name becomes addresses and which addresses count as public. The product uses
    ``AddressPolicy()``; tests replace it so that a loopback address can stand in for a public
    server and a resolver can change its answer, with no traffic leaving 127.0.0.0/8."""

    resolve: Resolver = system_resolver
    public: Callable[[Address], bool] = is_public


def checked_addresses(
    target: Target, allow_private: bool, policy: AddressPolicy
) -> tuple[Address, ...]:
    """Resolve ``target`` once and return its addresses, all of them allowed."""
    found: list[Address] = []
    if target.literal is not None:
        found = [target.literal]
    else:
        try:
            answers = policy.resolve(target.host, target.port)
            found = [ip_address(answer) for answer in answers]
        except (OSError, UnicodeError, ValueError) as exc:
            raise OutboundFailed(f"cannot resolve {target.host}") from exc
    if not found:
        raise OutboundFailed(f"cannot resolve {target.host}")
    unique = tuple(dict.fromkeys(found))
    if not allow_private:
        for address in unique:
            if not policy.public(address):
                raise OutboundRefused(
                    f"{target.host} resolves to a non-public address ({address}); {ALLOW_HINT}"
                )
    return unique


def _kind(address: Address) -> str:
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    return "not a public address"


def check_configured_url(url: str, allow_private: bool) -> None:
    """What an operator sets as a URL idbridge will call (``idbridge apply``, the admin API).

    Raises ``OutboundRefused`` with a sentence for the operator: the URL is ambiguous (the same
    rules as every call), or, unless ``allow_private``, its host is literally a non-public
    address or a ``localhost`` name (RFC 6761 §6.3). Names are not resolved here: what they
    resolve to is checked at every call.
    """
    target = parse(url)
    if allow_private:
        return
    address = target.literal
    if address is not None and not is_public(address):
        mapped = address.ipv4_mapped if isinstance(address, IPv6Address) else None
        raise OutboundRefused(f"{target.host} is {_kind(mapped or address)}; {ALLOW_HINT}")
    if target.host == "localhost" or target.host.endswith(".localhost"):
        raise OutboundRefused(f"{target.host} is a loopback host name; {ALLOW_HINT}")
