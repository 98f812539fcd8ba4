"""A real identity provider for tests: a JWKS endpoint on 127.0.0.1 and real signed tokens.

``IdentityProviderServer`` serves its RSA and EC public keys at ``jwks_uri`` from a werkzeug
server in a thread, and mints access tokens, ID tokens, refresh tokens and back-channel logout
tokens with real RS256 / ES256 signatures (pyjwt[crypto]). Faults on demand: rotate the keys,
make the endpoint slow, down (503), answer HTML, or serve extra (say ``use: enc``) keys.
``fetches`` counts the JWKS requests it answered. Use it as a context manager (it stops its
server on exit)::

    with IdentityProviderServer() as idp:
        token = idp.access_token("00u1", sid="s-1")
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.conftest import remember_secret

AUDIENCE = "api://platform"
CLIENT_ID = "platform-web"  # the platform's client: ID tokens name it as their audience
RP_CLIENT_ID = "idbridge"  # idbridge's own client at the IdP: logout tokens name it
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        jwk = json.loads(algorithm.to_jwk(self.private.public_key()))
        return jwk | {"kid": self.kid, "use": "sig", "alg": self.algorithm}


def new_key(algorithm: str) -> SigningKey:
    if algorithm.startswith(("RS", "PS")):
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"no test key for {algorithm}")
    return SigningKey(
        kid=f"{algorithm.lower()}-{uuid.uuid4().hex[:8]}", algorithm=algorithm, private=private
    )


class IdentityProviderServer:
    """The tenant's identity provider, as far as idbridge can see it."""

    def __init__(self, path: str = "/oauth2/default") -> None:
        self.path = path
        self.keys = {"RS256": new_key("RS256"), "ES256": new_key("ES256")}
        self.extra_jwks: list[dict[str, Any]] = []  # served as is, after the signing keys
        self.mode = "ok"  # ok | slow | down | html | garbage
        self.delay = 0.0  # seconds, in "slow" mode
        self.fetches = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- the server --

    def start(self) -> IdentityProviderServer:
        self._server = make_server("127.0.0.1", 0, self._answer, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> IdentityProviderServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def issuer(self) -> str:
        return self.base_url + self.path

    @property
    def jwks_uri(self) -> str:
        return self.issuer + "/v1/keys"

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The tenant's ``idp`` section (admin API / operator file) that trusts this IdP."""
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "audiences": [AUDIENCE],
            "algorithms": ["RS256", "ES256"],
            "subject_claim": "sub",
            "connector_settings": {"client_id": RP_CLIENT_ID},
        } | overrides

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys.values()] + self.extra_jwks}

    @Request.application
    def _answer(self, request: Request) -> Response:
        if request.path != self.path + "/v1/keys":
            return Response("not found", status=404)
        self.fetches += 1
        if self.mode == "slow":
            time.sleep(self.delay)
        if self.mode == "down":
            return Response("unavailable", status=503)
        if self.mode == "html":
            return Response("<html><body>Sign in</body></html>", content_type="text/html")
        if self.mode == "garbage":
            return Response('{"keys": "nope"}', content_type="application/json")
        return Response(json.dumps(self.jwks()), content_type="application/json")

    # -- keys --

    def rotate(self, algorithm: str = "RS256") -> SigningKey:
        """Replace the key of ``algorithm`` by a new one (new ``kid``); the old one is gone."""
        self.keys[algorithm] = new_key(algorithm)
        return self.keys[algorithm]

    # -- tokens --

    def sign(
        self,
        claims: dict[str, Any],
        algorithm: str = "RS256",
        headers: dict[str, Any] | None = None,
        key: SigningKey | None = None,
    ) -> str:
        """``claims`` signed with the IdP's key for ``algorithm`` (or ``key``), ``kid`` set."""
        key = key or self.keys[algorithm]
        token = jwt.encode(
            claims, key.private, algorithm=key.algorithm, headers={"kid": key.kid} | (headers or {})
        )
        return remember_secret(token)

    def claims(self, subject: str, lifetime: int = 300, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "iss": self.issuer,
            "sub": subject,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        return {**base, **{name: value for name, value in extra.items() if value is not None}}

    def access_token(
        self,
        subject: str = "00u1",
        *,
        audience: str | list[str] | None = AUDIENCE,
        sid: str | None = None,
        auth_time: int | None = None,
        algorithm: str = "RS256",
        headers: dict[str, Any] | None = None,
        lifetime: int = 300,
        **extra: Any,
    ) -> str:
        """An RFC 9068 access token for the tenant's API (header ``typ: at+jwt``)."""
        claims = self.claims(
            subject, lifetime, aud=audience, sid=sid, auth_time=auth_time, scope="openid", **extra
        )
        return self.sign(claims, algorithm, {"typ": "at+jwt"} | (headers or {}))

    def id_token(
        self,
        subject: str = "00u1",
        *,
        audience: str = CLIENT_ID,
        sid: str | None = None,
        lifetime: int = 300,
        algorithm: str = "RS256",
        **extra: Any,
    ) -> str:
        """An OpenID Connect ID token: ``aud`` is the client, with ``nonce`` and ``at_hash``."""
        extra = {"nonce": uuid.uuid4().hex, "at_hash": "x" * 22} | extra
        claims = self.claims(
            subject, lifetime, aud=audience, sid=sid, auth_time=int(time.time()), **extra
        )
        return self.sign(claims, algorithm, {"typ": "JWT"})

    def refresh_token(self, subject: str = "00u1", *, sid: str | None = None) -> str:
        """A JWT refresh token as Keycloak issues them (payload ``typ: Refresh``)."""
        claims = self.claims(subject, 1800, aud=AUDIENCE, sid=sid, typ="Refresh")
        return self.sign(claims, "RS256", {"typ": "JWT"})

    def logout_token(
        self,
        subject: str | None = "00u1",
        *,
        sid: str | None = None,
        audience: str = RP_CLIENT_ID,
        algorithm: str = "RS256",
        **extra: Any,
    ) -> str:
        """A Back-Channel Logout 1.0 logout token (§2.4), header ``typ: logout+jwt``."""
        extra = {"events": {BACKCHANNEL_LOGOUT_EVENT: {}}} | extra
        claims = self.claims("", 120, aud=audience, sid=sid, **extra)
        claims.pop("sub")
        if subject is not None:
            claims["sub"] = subject
        return self.sign(claims, algorithm, {"typ": "logout+jwt"})
