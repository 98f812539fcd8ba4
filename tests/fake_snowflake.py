"""A fake Snowflake account at the HTTP level, checking External OAuth tokens as Snowflake does.

It is configured like a Snowflake ``EXTERNAL_OAUTH`` security integration of type ``CUSTOM``:
``issuer`` (``EXTERNAL_OAUTH_ISSUER``), ``audiences`` (``EXTERNAL_OAUTH_AUDIENCE_LIST``),
``jwks_url`` (``EXTERNAL_OAUTH_JWS_KEYS_URL``, fetched over real HTTP), ``user_mapping_claim``
(``EXTERNAL_OAUTH_TOKEN_USER_MAPPING_CLAIM``) matched against its users' ``LOGIN_NAME``
(case-insensitively, as Snowflake stores login names upper case), and roles taken from
``scp: ["session:role:<ROLE>"]``, which must be granted to the user.

``POST /api/v2/statements`` (the SQL API) with ``Authorization: Bearer <token>`` and
``X-Snowflake-Authorization-Token-Type: OAUTH`` answers 200 with the session's user and role,
or Snowflake's 401 for a refused OAuth token, ``{"code": "390303", "message": "Invalid OAuth
access token. [<uuid>]"}``, where the UUID names a login failure whose detail
(``failures[uuid]``) is what ``SYSTEM$GET_LOGIN_FAILURE_DETAILS`` would report.
"""

from __future__ import annotations

import json
import uuid

import jwt
import requests
from werkzeug.wrappers import Request, Response

from tests.loopback import LoopbackServer

INVALID_OAUTH_TOKEN = "390303"
ROLE_PREFIX = "session:role:"


class FakeSnowflake(LoopbackServer):
    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str,
        audiences: list[str],
        users: dict[str, list[str]],
        user_mapping_claim: str = "sub",
    ) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.audiences = audiences
        self.users = {
            login.upper(): [role.upper() for role in roles] for login, roles in users.items()
        }
        self.user_mapping_claim = user_mapping_claim
        self.failures: dict[str, str] = {}

    def query(
        self, token: str, statement: str = "select current_user(), current_role()"
    ) -> requests.Response:
        return requests.post(
            self.url + "/api/v2/statements",
            json={"statement": statement},
            headers={
                "Authorization": f"Bearer {token}",
                "X-Snowflake-Authorization-Token-Type": "OAUTH",
            },
            timeout=10,
        )

    # -- the server --

    def _refuse(self, detail: str) -> Response:
        failure = str(uuid.uuid4())
        self.failures[failure] = detail
        body = {"code": INVALID_OAUTH_TOKEN, "message": f"Invalid OAuth access token. [{failure}]"}
        return Response(json.dumps(body), status=401, content_type="application/json")

    @Request.application
    def _answer(self, request: Request) -> Response:
        if request.path != "/api/v2/statements" or request.method != "POST":
            return Response("not found", status=404)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if (
            scheme != "Bearer"
            or request.headers.get("X-Snowflake-Authorization-Token-Type") != "OAUTH"
        ):
            return self._refuse("EXTERNAL_OAUTH_JWS_INVALID_FORMAT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return self._refuse("EXTERNAL_OAUTH_JWS_INVALID_FORMAT")
        if header.get("alg") != "RS256":
            return self._refuse("EXTERNAL_OAUTH_INVALID_SIGNATURE")
        keys = requests.get(self.jwks_url, timeout=10).json()
        key = next((k for k in keys.get("keys", []) if k.get("kid") == header.get("kid")), None)
        if key is None:
            return self._refuse("EXTERNAL_OAUTH_INVALID_SIGNATURE")
        try:
            claims = jwt.decode(
                token,
                jwt.PyJWK(key).key,
                algorithms=["RS256"],
                audience=self.audiences,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.InvalidSignatureError:
            return self._refuse("EXTERNAL_OAUTH_INVALID_SIGNATURE")
        except jwt.InvalidIssuerError:
            return self._refuse("EXTERNAL_OAUTH_INVALID_ISSUER")
        except jwt.InvalidAudienceError:
            return self._refuse("EXTERNAL_OAUTH_INVALID_AUDIENCE")
        except jwt.ExpiredSignatureError:
            return self._refuse("EXTERNAL_OAUTH_EXPIRED_TOKEN")
        except jwt.PyJWTError:
            return self._refuse("EXTERNAL_OAUTH_JWS_INVALID_FORMAT")
        login = claims.get(self.user_mapping_claim)
        if not isinstance(login, str) or login.upper() not in self.users:
            return self._refuse("EXTERNAL_OAUTH_USER_NOT_FOUND")
        scopes = claims.get("scp", [])
        roles = [
            s[len(ROLE_PREFIX) :].upper()
            for s in scopes
            if isinstance(s, str) and s.startswith(ROLE_PREFIX)
        ]
        if not roles or any(role not in self.users[login.upper()] for role in roles):
            return self._refuse("EXTERNAL_OAUTH_INVALID_ROLE")
        body = {
            "code": "090001",
            "message": "Statement executed successfully.",
            "data": [[login.upper(), roles[0]]],
        }
        return Response(json.dumps(body), status=200, content_type="application/json")
