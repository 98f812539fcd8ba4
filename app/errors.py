"""Domain errors: raised anywhere in ``app/``, rendered once at the edge in the caller's protocol.

Each carries a stable ``code`` and an HTTP ``status``; each protocol package maps them to its own
wire format (the admin API's JSON error, OAuth error JSON, SCIM Error, the webhook error body).
"""

from __future__ import annotations


class DomainError(Exception):
    code = "invalid_request"
    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    code = "invalid_request"
    status = 400


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    status = 409


class StoreUnavailable(DomainError):
    """The database (or a shared cache guarding security) cannot answer now: retry later."""

    code = "unavailable"
    status = 503
    retry_after = 2
