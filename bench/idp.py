"""A tiny identity provider for the benchmark: a loopback JWKS endpoint and RS256 access
tokens signed with its key."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

AUDIENCE = "api://platform"
PATH = "/oauth2/default"
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per JWKS fetch


class BenchIdentityProvider:
    def __init__(self) -> None:
        self.kid = "bench-" + uuid.uuid4().hex[:8]
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._server: Any = make_server("127.0.0.1", 0, self._answer, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> BenchIdentityProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{PATH}"

    @property
    def jwks_uri(self) -> str:
        return self.issuer + "/v1/keys"

    def tenant_idp(self) -> dict[str, Any]:
        """The tenant's ``idp`` section that trusts this provider."""
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "audiences": [AUDIENCE],
            "algorithms": ["RS256"],
            "subject_claim": "sub",
        }

    def access_token(self, subject: str, lifetime: int = 3600) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            "scope": "openid",
        }
        headers = {"kid": self.kid, "typ": "at+jwt"}
        return jwt.encode(claims, self.private, algorithm="RS256", headers=headers)

    @Request.application
    def _answer(self, request: Request) -> Response:
        if request.path != PATH + "/v1/keys":
            return Response("not found", status=404)
        algorithm = jwt.get_algorithm_by_name("RS256")
        jwk = json.loads(algorithm.to_jwk(self.private.public_key()))
        jwk |= {"kid": self.kid, "use": "sig", "alg": "RS256"}
        return Response(json.dumps({"keys": [jwk]}), content_type="application/json")
