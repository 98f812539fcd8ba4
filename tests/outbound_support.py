"""What the outbound-guard tests share: a TCP server on a loopback address that counts every
connection it accepts, a resolver whose answers a test scripts, and a test certificate
authority. Nothing here sends or accepts traffic outside 127.0.0.0/8."""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app import outbound

BODY = b'{"keys": [], "ok": true}'


class CountingServer:
    """Accepts TCP connections on ``host`` (one at a time, each answered with one small JSON
    response and closed), counting them and keeping each request head and TLS SNI name."""

    def __init__(self, host: str = "127.0.0.9", port: int = 0, tls: ssl.SSLContext | None = None):
        self.host = host
        self.connections = 0
        self.heads: list[bytes] = []
        self.server_names: list[str | None] = []
        self._tls = tls
        self._listener = socket.create_server((host, port))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        if tls is not None:
            tls.sni_callback = self._note_server_name

    @classmethod
    def twins(cls, first: str, second: str) -> tuple[CountingServer, CountingServer]:
        """Two servers on one port number, at two loopback addresses (a few tries: the port
        free at the first address may be taken at the second)."""
        for _ in range(20):
            one = cls(first)
            try:
                return one, cls(second, one.port)
            except OSError:
                one.close()
        raise RuntimeError(f"no port free at both {first} and {second}")

    def close(self) -> None:
        self._listener.close()

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):  # wake the accept; the stop is seen before counting
            socket.create_connection((self.host, self.port), timeout=1).close()
        self._thread.join(timeout=5)
        self.close()

    def _note_server_name(self, _sock: object, name: str | None, _context: object) -> None:
        self.server_names.append(name)

    def _serve(self) -> None:
        while True:
            connection, _ = self._listener.accept()
            if self._stop.is_set():
                connection.close()
                return
            self.connections += 1
            with connection:
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        connection.settimeout(2)
        try:
            stream: socket.socket = connection
            if self._tls is not None:
                stream = self._tls.wrap_socket(connection, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = stream.recv(4096)
                if not chunk:
                    break
                head += chunk
            self.heads.append(head)
            stream.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
                + BODY
            )
        except (OSError, ssl.SSLError):
            return  # a refused handshake or a client that went away: the count stands


class ScriptedResolver:
    """Answers each lookup with the next of ``answers`` (the last one repeats); counts calls."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return list(self.answers[min(len(self.calls), len(self.answers)) - 1])


def public_only(*addresses: str) -> Callable[[IPv4Address | IPv6Address], bool]:
    """An address policy under which exactly ``addresses`` (loopback ones standing in for
    public servers) count as public."""
    chosen = {ip_address(address) for address in addresses}
    return lambda address: address in chosen


def policy(
    resolver: Callable[[str, int], Sequence[str]] | None = None, public: Sequence[str] = ()
) -> outbound.AddressPolicy:
    def refuse_lookups(host: str, port: int) -> list[str]:
        raise AssertionError(f"the outbound guard resolved {host} although it must not")

    return outbound.AddressPolicy(resolve=resolver or refuse_lookups, public=public_only(*public))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def tls_files(folder: Path, dns_name: str) -> tuple[Path, ssl.SSLContext]:
    """A fresh CA (its certificate written to ``folder/ca.pem``) and a server context whose
    certificate, signed by it, names ``dns_name`` only."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("idbridge test CA"))
        .issuer_name(_name("idbridge test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = folder / f"{dns_name}.pem"
    chain.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + leaf.public_bytes(serialization.Encoding.PEM)
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    return ca_file, context
