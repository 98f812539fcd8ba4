"""A fake Salesforce token endpoint at the HTTP level, and a configurable fault server.

``POST /services/oauth2/token`` speaks the Salesforce OAuth 2.0 token exchange flow: it records
each request's form (``requests``) and, in mode ``ok``, answers as Salesforce documents it:
``access_token``, ``signature``, ``scope``, ``instance_url``, ``id`` (the identity URL),
``token_type: Bearer``, ``issued_at`` (milliseconds), ``api_instance_url`` and
``issued_token_type``, and no ``expires_in``. A subject token it does not know a user for gets
what a token exchange handler that maps no user gives: 400 ``invalid_grant`` (``users`` holds
the known subject tokens' users; empty means "everyone").

Faults on demand (``mode``): ``slow`` (answers after ``delay`` seconds), ``down`` (503),
``html`` (200 with an HTML page), ``no_token`` (200 without ``access_token``),
``negative`` (``expires_in: -5``), ``no_user`` (400 ``invalid_grant`` "no user found"),
``refused`` (400 ``invalid_client``). Use it as a context manager.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.loopback import LoopbackServer

PATH = "/services/oauth2/token"
ORG = "00D5g000000XyZ1"


class FakeSalesforce(LoopbackServer):
    def __init__(self) -> None:
        self.mode = "ok"
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.issued: list[str] = []

    @property
    def token_endpoint(self) -> str:
        return self.url + PATH

    @staticmethod
    def _json(body: dict[str, Any], status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json")

    @Request.application
    def _answer(self, request: Request) -> Response:
        if request.path != PATH or request.method != "POST":
            return Response("not found", status=404)
        self.requests.append(
            {
                "content_type": request.mimetype,
                "authorization": request.headers.get("Authorization"),
                "form": request.form.to_dict(flat=True),
            }
        )
        if self.mode == "slow":
            time.sleep(self.delay)
        if self.mode == "down":
            return Response("Service Unavailable", status=503)
        if self.mode == "html":
            return Response("<html><body>Maintenance</body></html>", content_type="text/html")
        if self.mode == "no_user":
            return self._json({"error": "invalid_grant", "error_description": "no user found"}, 400)
        if self.mode == "refused":
            return self._json(
                {"error": "invalid_client", "error_description": "invalid client credentials"},
                400,
            )
        token = f"{ORG}!AQ{uuid.uuid4().hex}"
        self.issued.append(token)
        body: dict[str, Any] = {
            "access_token": token,
            "signature": "c2lnbmF0dXJl",
            "scope": request.form.get("scope", "api"),
            "instance_url": "https://acme.my.salesforce.com",
            "id": f"https://login.salesforce.com/id/{ORG}/0055g00000AbCdE",
            "token_type": "Bearer",
            "issued_at": str(int(time.time() * 1000)),
            "api_instance_url": "https://api.salesforce.com",
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }
        if self.mode == "no_token":
            body.pop("access_token")
        if self.mode == "negative":
            body["expires_in"] = -5
        return self._json(body)
