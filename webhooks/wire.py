"""The webhook wire format (CONTRACT §1): request bodies, the User object, the error body.

The one place where domain objects become JSON for the Users service and back. The User
follows the proto3 JSON mapping: int64 as a decimal string, timestamps RFC 3339 in UTC with
``Z`` (whole seconds), unset optional fields (``customer``, ``email``, ``login_time``)
omitted, scalars always present.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.errors import DomainError, InvalidInput
from app.models import Tenant, User

ERROR_CODES = ("invalid_request", "unauthorized", "not_found", "conflict", "unavailable")


class Unauthorized(DomainError):
    """Missing, stale or wrong signature; an unknown tenant looks exactly the same."""

    code = "unauthorized"
    status = 401


def _storable(value: str) -> None:
    """No NUL characters or unpaired surrogates: no store keeps them as given."""
    if "\x00" in value:
        raise ValidationError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("must be text without unpaired surrogates") from None


def _text(maximum: int, description: str, required: bool = False) -> fields.String:
    return fields.String(
        required=required,
        validate=[validate.Length(min=1, max=maximum), _storable],
        metadata={"description": description},
    )


_ID = "The identity provider's id of the user (the subject of its tokens)."
_EMAIL = "An email address, matched in its canonical form (NFKC, case folded)."


class _Body(Schema):
    class Meta:
        unknown = RAISE


class WebhookUserId(_Body):
    id = _text(255, _ID, required=True)


class WebhookUserEmail(_Body):
    email = _text(320, _EMAIL, required=True)


class WebhookUserLookup(_Body):
    """Exactly one of `id`, `email`, `customer`."""

    id = _text(255, _ID)
    email = _text(320, _EMAIL)
    customer = _text(255, "The customer the user belongs to (unique within the tenant).")

    @validates_schema
    def _exactly_one(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if len(data) != 1:
            raise ValidationError("give exactly one of id, email, customer")


class WebhookUser(Schema):
    """A User (CONTRACT §1), proto3 JSON conventions."""

    tenant = fields.String(required=True)
    id = fields.String(required=True, metadata={"description": _ID})
    customer = fields.String(metadata={"description": "Omitted when the user has none."})
    email = fields.String(metadata={"description": "As stored; omitted when unknown."})
    create_time = fields.String(required=True, metadata={"format": "date-time"})
    update_time = fields.String(required=True, metadata={"format": "date-time"})
    logins_count = fields.String(
        required=True, metadata={"description": "int64 as a decimal string.", "pattern": "^[0-9]+$"}
    )
    login_time = fields.String(metadata={"format": "date-time"})
    email_verified = fields.Boolean(required=True)
    blocked = fields.Boolean(
        required=True, metadata={"description": "Deactivated by the IdP or by an operator."}
    )


class WebhookError(Schema):
    code = fields.String(required=True, validate=validate.OneOf(ERROR_CODES))
    message = fields.String(required=True)


def load(schema: type[Schema], payload: Any) -> dict[str, Any]:
    """Validate a parsed body; any problem is ``InvalidInput`` naming the field."""
    try:
        return schema().load(payload)
    except ValidationError as exc:
        messages = exc.normalized_messages()
        field, problems = next(iter(messages.items()))
        if isinstance(problems, dict):  # nested: report the first inner message
            problems = next(iter(problems.values()))
        detail = problems[0] if isinstance(problems, list) and problems else str(problems)
        where = "" if field == "_schema" else f"{field}: "
        field_name = None if field == "_schema" else field
        raise InvalidInput(f"{where}{detail}".rstrip(), field_name) from None


def timestamp(value: datetime) -> str:
    """RFC 3339, UTC, ``Z``, whole seconds (a proto3 JSON Timestamp)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user(row: User, tenant: Tenant) -> dict[str, Any]:
    body: dict[str, Any] = {"tenant": tenant.slug, "id": row.subject}
    if row.customer is not None:
        body["customer"] = row.customer
    if row.email is not None:
        body["email"] = row.email
    body |= {
        "create_time": timestamp(row.created_at),
        "update_time": timestamp(row.updated_at),
        "logins_count": str(row.logins_count or 0),
    }
    if row.login_time is not None:
        body["login_time"] = timestamp(row.login_time)
    body |= {"email_verified": bool(row.email_verified), "blocked": row.blocked}
    return body


def error(exc: DomainError) -> dict[str, str]:
    code = exc.code if exc.code in ERROR_CODES else "invalid_request"
    return {"code": code, "message": exc.message}
