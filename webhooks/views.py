"""``POST /t/{tenant}/webhooks/users/{operation}``: the Users service's five calls.

Each view: verify the signature over the raw bytes, parse the body, then run one domain
operation under the ``webhook-id`` (``app.idempotency.run``) and render its outcome. Errors,
whatever raised them, leave in the webhook error body ``{"code", "message"}`` (CONTRACT §1),
rendered once by this blueprint's handlers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from flask import Response, request
from flask_smorest import Blueprint
from marshmallow import Schema
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from app import credentials, idempotency, runtime, tenants, user_webhooks
from app.errors import DomainError, InvalidInput, NotFound, StoreUnavailable
from app.idempotency import Outcome
from app.models import Tenant
from app.schemas import SLUG
from webhooks import wire
from webhooks.signatures import HEADERS, REFUSED, verify

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/t/<slug>/webhooks/users",
    description="User webhooks called by the platform's Users service (Standard Webhooks "
    "signatures, `webhook-id` idempotency). CONTRACT §1.",
)
MAX_WEBHOOK_ID = 255
SIGNATURE_PARAMETERS = [
    {
        "in": "header",
        "name": "webhook-id",
        "required": True,
        "schema": {"type": "string", "maxLength": MAX_WEBHOOK_ID},
        "description": "Unique message id; the idempotency key (remembered 24 hours).",
    },
    {
        "in": "header",
        "name": "webhook-timestamp",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
        "description": "Unix seconds; more than 5 minutes away from now is refused.",
    },
    {
        "in": "header",
        "name": "webhook-signature",
        "required": True,
        "schema": {"type": "string"},
        "description": 'Space-separated `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{raw '
        'body}">` entries, one per active secret; other versions are ignored.',
    },
]
_ERRORS = {
    400: "Malformed JSON, wrong types, unknown fields (`invalid_request`).",
    401: "Missing, stale or wrong signature, or an unknown tenant (`unauthorized`).",
    404: "No such user (`not_found`).",
    409: "The `webhook-id` was used before for another operation or another body "
    "(`conflict`); nothing ran. A retry resends the same bytes; a new message needs a new id.",
    429: "Past the tenant's or the caller's rate limit (`unavailable`); retry after "
    "`Retry-After` seconds with the same `webhook-id`.",
    503: "The store or the identity provider cannot answer now (`unavailable`); retry after "
    "`Retry-After` seconds with the same `webhook-id`.",
}
_NOT_NOW = (  # 409 of an operation that has conflicts of its own
    "The operation does not apply to the user now, or the `webhook-id` was used before for "
    "another operation or another body (`conflict`); nothing ran."
)
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
}


def _json(status: int, body: dict[str, Any] | None) -> Response:
    if body is None:
        return Response(status=status)
    return Response(json.dumps(body), status=status, mimetype="application/json")


def render_domain_error(exc: DomainError) -> Response:
    response = _json(exc.status, wire.error(exc))
    if isinstance(exc, StoreUnavailable):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def render_http_error(exc: HTTPException) -> Response:
    """Werkzeug's own errors (413 body too large, ...) in the webhook error body too."""
    status = exc.code or 400
    retry_later = {429: "unavailable", 503: "unavailable"}  # 429: a rate limit, app.limits
    code = {401: "unauthorized", 404: "not_found", 409: "conflict", **retry_later}.get(
        status, "invalid_request"
    )
    return _json(status, {"code": code, "message": exc.description or exc.name})


blp.register_error_handler(DomainError, render_domain_error)
blp.register_error_handler(HTTPException, render_http_error)


def documented(operation: str, schema: type[Schema], *errors: int) -> Callable:
    """Document the signature headers, the request body and every error an operation has
    (409 for all: a ``webhook-id`` reused for another message, ``app.idempotency``)."""

    def decorator(view: Callable) -> Callable:
        for status in sorted({400, 401, 409, 429, 503, *errors}, reverse=True):
            description = _NOT_NOW if status == 409 and 409 in errors else _ERRORS[status]
            view = blp.alt_response(
                status,
                schema=wire.WebhookError,
                description=description,
                headers=_RETRY_AFTER if status in (429, 503) else None,
            )(view)
        view = blp.doc(
            operationId=f"webhook_users_{operation.replace('-', '_')}",
            parameters=SIGNATURE_PARAMETERS,
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": schema}},
            },
        )(view)
        return view

    return decorator


Action = Callable[[Session, Tenant, dict[str, Any], str], Outcome]


def handle(slug: str, operation: str, schema: type[Schema], action: Action) -> Response:
    """Verify, parse, run once under the ``webhook-id``, render."""
    rt = runtime.current()
    body = request.get_data(cache=False)
    if not re.fullmatch(SLUG, slug):  # an impossible tenant looks like any unknown one
        raise wire.Unauthorized(REFUSED)
    try:
        with rt.db.read() as session:
            tenant = tenants.find(session, slug)
            secrets = credentials.active_webhook_keys(session, rt.keyring, tenant)
    except NotFound:
        raise wire.Unauthorized(REFUSED) from None  # no tenant-existence oracle
    webhook_id = verify(secrets, body, {name: request.headers.get(name, "") for name in HEADERS})
    if len(webhook_id) > MAX_WEBHOOK_ID:
        raise InvalidInput(f"webhook-id must be at most {MAX_WEBHOOK_ID} characters")
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidInput("the body is not valid JSON") from None
    data = wire.load(schema, payload)
    try:
        outcome = idempotency.run(
            rt.db,
            rt.keyring,
            slug,
            idempotency.Message(webhook_id, operation, body),
            lambda session, tenant: action(session, tenant, data, webhook_id),
        )
    except NotFound as exc:  # the tenant went away after the signature was checked
        raise wire.Unauthorized(REFUSED) from exc
    return _json(outcome.status, outcome.body)


@blp.route("/get", methods=["POST"])
@blp.response(200, wire.WebhookUser, description="The User.")
@documented("get", wire.WebhookUserLookup, 404)
def get_user(slug: str) -> Response:
    """Get a user by `id`, `email` or `customer`"""

    def action(session: Session, tenant: Tenant, data: dict[str, Any], _key: str) -> Outcome:
        found = user_webhooks.find(session, data.get("id"), data.get("email"), data.get("customer"))
        return Outcome(200, wire.user(found, tenant))

    return handle(slug, "get", wire.WebhookUserLookup, action)


@blp.route("/delete", methods=["POST"])
@blp.response(204, description="Deleted, at the identity provider too; every session ended.")
@documented("delete", wire.WebhookUserId, 404)
def delete_user(slug: str) -> Response:
    """Delete a user

    The identity provider is called first (through the tenant's connector); when it fails the
    answer is 503 and nothing is deleted. Every token of the user is refused from now on.
    """

    def action(session: Session, tenant: Tenant, data: dict[str, Any], _key: str) -> Outcome:
        user_webhooks.delete(session, runtime.current(), tenant, data["id"])
        return Outcome(204)

    return handle(slug, "delete", wire.WebhookUserId, action)


@blp.route("/mark-email-verified", methods=["POST"])
@blp.response(200, wire.WebhookUser, description="The User after the change (idempotent).")
@documented("mark-email-verified", wire.WebhookUserId, 404)
def mark_email_verified(slug: str) -> Response:
    """Mark a user's email address verified"""

    def action(session: Session, tenant: Tenant, data: dict[str, Any], _key: str) -> Outcome:
        user = user_webhooks.mark_email_verified(session, runtime.current(), tenant, data["id"])
        return Outcome(200, wire.user(user, tenant))

    return handle(slug, "mark-email-verified", wire.WebhookUserId, action)


@blp.route("/send-verification-email", methods=["POST"])
@blp.response(202, description="The verification mail is queued (sent off the request path).")
@documented("send-verification-email", wire.WebhookUserId, 404, 409)
def send_verification_email(slug: str) -> Response:
    """Send a verification email

    409 when the address is already verified, missing, or the user is blocked. The mail is
    the identity provider's own where its connector sends one, else idbridge's single-use link.
    """

    def action(session: Session, tenant: Tenant, data: dict[str, Any], key: str) -> Outcome:
        user_webhooks.send_verification_email(session, runtime.current(), tenant, data["id"], key)
        return Outcome(202)

    return handle(slug, "send-verification-email", wire.WebhookUserId, action)


@blp.route("/send-password-reset-email", methods=["POST"])
@blp.response(202, description="Accepted, whether or not the address is known.")
@documented("send-password-reset-email", wire.WebhookUserEmail)
def send_password_reset_email(slug: str) -> Response:
    """Send a password reset email

    The same answer for a known, unknown or blocked address; mail (or the identity provider's
    reset) happens off the request path, and nothing is sent for an unknown or blocked one.
    """

    def action(session: Session, tenant: Tenant, data: dict[str, Any], key: str) -> Outcome:
        user_webhooks.send_password_reset_email(
            session, runtime.current(), tenant, data["email"], key
        )
        return Outcome(202)

    return handle(slug, "send-password-reset-email", wire.WebhookUserEmail, action)
