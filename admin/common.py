"""What every ``/admin/v1`` route shares: the blueprint factory, the operator token check, the
one rendering of domain errors, and the documentation of the errors an operation can answer.

Errors have one shape on the whole admin API, the one flask-smorest uses for its own (422
validation errors, 404 unknown URLs, 400 malformed JSON)::

    {"code": 409, "status": "Conflict", "message": "client 'broker' already exists",
     "errors": {"json": {"client_id": ["client 'broker' already exists"]}}}

``errors`` is present when the problem is one field of the request: keyed by where the field
is (``json``, ``query``), then by its name.
"""

from __future__ import annotations

import http
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, g, jsonify, request
from flask_smorest import Api, Blueprint, abort

from app import runtime
from app import schemas as rules
from app.api import ADMIN_TOKEN_SCHEME
from app.crypto import constant_time_equals
from app.errors import DomainError, StoreUnavailable

PREFIX = "/admin/v1"
REALM = 'Bearer realm="idbridge-admin"'
UNAUTHORIZED = "AdminUnauthorized"
UNAVAILABLE = "AdminUnavailable"
View = TypeVar("View", bound=Callable[..., Any])


def admin_blueprint(name: str, description: str) -> Blueprint:
    """A smorest blueprint under ``/admin/v1`` whose every route needs the operator token."""
    blp = Blueprint(f"admin-{name}", __name__, url_prefix=PREFIX, description=description)
    blp.before_request(require_operator)
    blp.before_request(_judge_urls_by_settings)
    blp.teardown_request(_forget_url_setting)
    blp.register_error_handler(DomainError, render_domain_error)
    return blp


def _judge_urls_by_settings() -> None:
    """The request schemas refuse literal private hosts in the URLs idbridge calls unless this
    deployment sets ``IDBRIDGE_ALLOW_PRIVATE_URLS`` (``app.schemas.private_urls``)."""
    allowed = runtime.current().settings.allow_private_urls
    g.private_urls_token = rules.PRIVATE_URLS_ALLOWED.set(allowed)


def _forget_url_setting(_error: BaseException | None) -> None:
    token = g.pop("private_urls_token", None)
    if token is not None:
        rules.PRIVATE_URLS_ALLOWED.reset(token)


def require_operator() -> None:
    """``Authorization: Bearer <IDBRIDGE_ADMIN_TOKEN>``, compared in constant time (RFC 6750).

    With no token configured the admin API is off: every call answers 401.
    """
    expected = runtime.current().settings.admin_token
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if not presented:
        _unauthorized("operator bearer token required", REALM)
    if (
        not expected
        or scheme.lower() != "bearer"
        or not constant_time_equals(presented.strip(), expected)
    ):
        _unauthorized("invalid operator token", f'{REALM}, error="invalid_token"')


def _unauthorized(message: str, challenge: str) -> None:
    abort(401, message=message, headers={"WWW-Authenticate": challenge})


def render_domain_error(exc: DomainError) -> tuple[Response, int]:
    """``app.errors`` exceptions in flask-smorest's error shape (the documented ``Error``)."""
    body: dict[str, Any] = {
        "code": exc.status,
        "status": http.HTTPStatus(exc.status).phrase,
        "message": exc.message,
    }
    if exc.field:
        body["errors"] = {"json": {exc.field: [exc.message]}}
    response = jsonify(body)
    if isinstance(exc, StoreUnavailable):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response, exc.status


def error_responses(api: Api) -> dict[str, dict[str, Any]]:
    """Response components for 401 and 503, which carry a header besides the error body."""
    error = {"application/json": {"schema": api.ERROR_SCHEMA}}
    return {
        UNAUTHORIZED: {
            "description": "No operator token, or not the right one (RFC 6750).",
            "headers": {
                "WWW-Authenticate": {
                    "description": 'Always `Bearer realm="idbridge-admin"`, plus '
                    '`error="invalid_token"` when a token was presented.',
                    "schema": {"type": "string"},
                }
            },
            "content": error,
        },
        UNAVAILABLE: {
            "description": "The database cannot answer now; retry after the given seconds.",
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer"},
                }
            },
            "content": error,
        },
    }


_REFS = {
    400: "BAD_REQUEST",
    401: UNAUTHORIZED,
    404: "NOT_FOUND",
    409: "CONFLICT",
    503: UNAVAILABLE,
}


def documented(blp: Blueprint, *statuses: int) -> Callable[[View], View]:
    """Document the operator token and the error statuses an operation can answer.

    401 and 503 apply to every operation; pass the others it can produce (400 for any JSON
    body, which may be malformed; 404 under a tenant; 409 where a name must be unique). 422
    is documented by ``blp.arguments`` itself.
    """

    def decorator(view: View) -> View:
        for status in sorted({401, 503, *statuses}, reverse=True):
            view = blp.alt_response(status, response=_REFS[status])(view)
        return blp.doc(security=[{ADMIN_TOKEN_SCHEME: []}])(view)

    return decorator


def invalid(errors: dict[str, Any]) -> None:
    """Answer 422 like flask-smorest does for a body that fails its schema."""
    abort(422, errors={"json": errors})
