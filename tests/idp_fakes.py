"""Keycloak and Okta faked at the HTTP level: real servers on 127.0.0.1 speaking their documented
paths, bodies, status codes and error bodies (Keycloak Admin REST API; Okta Users API).

Only what idbridge calls is implemented. ``failing = True`` makes every call answer 503 with
an HTML body, as a proxy in front of a sick IdP would; ``calls`` records (method, path, body).
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.conftest import remember_secret


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


@dataclass
class FakeIdp:
    name: str
    realm: str = "acme"
    client_id: str = "idbridge-admin"
    secret: str = field(default_factory=lambda: remember_secret("fake-" + secrets.token_hex(16)))
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    failing: bool = False
    issued: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def add_user(self, user_id: str, **attributes: Any) -> None:
        self.users[user_id] = {"id": user_id, "emailVerified": False, "status": "ACTIVE"} | (
            attributes
        )

    def admin_calls(self) -> list[tuple[str, str, Any]]:
        """Calls other than Keycloak's token requests."""
        return [call for call in self.calls if "/protocol/openid-connect/token" not in call[1]]

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body: Any = request.get_data(as_text=True)
        if request.mimetype == "application/json" and body:
            body = json.loads(body)
        elif request.mimetype == "application/x-www-form-urlencoded":
            body = request.form.to_dict()
        with self.lock:
            self.calls.append((request.method, request.full_path.rstrip("?"), body))
            if self.failing:
                response = Response(
                    "<html><body>503 Service Unavailable</body></html>", 503, mimetype="text/html"
                )
            elif self.name == "keycloak":
                response = self._keycloak(request, body)
            else:
                response = self._okta(request)
        return response(environ, start_response)

    # --- Keycloak: /realms/{realm}/protocol/openid-connect/token, /admin/realms/{realm}/users

    def _keycloak(self, request: Request, body: Any) -> Response:
        token_path = f"/realms/{self.realm}/protocol/openid-connect/token"
        if request.path == token_path and request.method == "POST":
            if (
                body.get("grant_type") != "client_credentials"
                or body.get("client_id") != self.client_id
                or body.get("client_secret") != self.secret
            ):
                return _json(
                    {
                        "error": "unauthorized_client",
                        "error_description": "Invalid client or Invalid client credentials",
                    },
                    401,
                )
            token = "kc-" + secrets.token_urlsafe(24)
            self.issued.add(token)
            return _json(
                {
                    "access_token": token,
                    "expires_in": 60,
                    "token_type": "Bearer",
                    "scope": "profile email",
                }
            )
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.issued:
            return _json({"error": "HTTP 401 Unauthorized"}, 401)
        prefix = f"/admin/realms/{self.realm}/users/"
        if not request.path.startswith(prefix):
            return _json({"error": "RESTEASY003210: Could not find resource for full path"}, 404)
        user_id, _, action = request.path.removeprefix(prefix).partition("/")
        user = self.users.get(user_id)
        if user is None:
            return _json({"error": "User not found"}, 404)
        if request.method == "DELETE" and not action:
            del self.users[user_id]
            return Response(status=204)
        if request.method == "PUT" and not action:
            user.update(body)
            return Response(status=204)
        if request.method == "PUT" and action == "send-verify-email":
            return Response(status=204)
        if request.method == "PUT" and action == "execute-actions-email":
            if body != ["UPDATE_PASSWORD"]:
                return _json({"errorMessage": "invalid actions"}, 400)
            return Response(status=204)
        if request.method == "POST" and action == "logout":
            user["sessions"] = 0
            return Response(status=204)
        return _json({"error": "HTTP 405 Method Not Allowed"}, 405)

    # --- Okta: /api/v1/users/{id}, lifecycle operations, SSWS tokens

    def _okta(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"SSWS {self.secret}":
            return _json(
                {
                    "errorCode": "E0000011",
                    "errorSummary": "Invalid token provided",
                    "errorLink": "E0000011",
                    "errorId": "oae" + secrets.token_hex(8),
                    "errorCauses": [],
                },
                401,
            )
        prefix = "/api/v1/users/"
        user_id, _, action = request.path.removeprefix(prefix).partition("/")
        user = self.users.get(user_id)
        if user is None or not request.path.startswith(prefix):
            return _json(
                {
                    "errorCode": "E0000007",
                    "errorSummary": f"Not found: Resource not found: {user_id} (User)",
                    "errorLink": "E0000007",
                    "errorId": "oae" + secrets.token_hex(8),
                    "errorCauses": [],
                },
                404,
            )
        if request.method == "POST" and action == "lifecycle/deactivate":
            user["status"] = "DEPROVISIONED"
            return _json({})
        if request.method == "DELETE" and not action:
            if user["status"] != "DEPROVISIONED":
                user["status"] = "DEPROVISIONED"  # Okta: the first DELETE only deactivates
            else:
                del self.users[user_id]
            return Response(status=204)
        if request.method == "POST" and action == "lifecycle/reset_password":
            if request.args.get("sendEmail") == "true":
                return _json({})
            return _json({"summary": "reset_password", "resetPasswordUrl": "https://x"})
        if request.method == "DELETE" and action == "sessions":
            user["sessions"] = 0
            return Response(status=204)
        return _json(
            {
                "errorCode": "E0000022",
                "errorSummary": "The endpoint does not support the provided HTTP method",
            },
            405,
        )
