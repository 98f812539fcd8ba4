"""The token endpoint's refusals (RFC 6749 §5.2, RFC 8693 §2.2.2, CONTRACT §3).

Raised by the domain (``app.exchange``, ``app.mappings``), rendered once by ``oauth.exchange``
as ``{"error", "error_description"}`` with ``Cache-Control: no-store``; the ``code`` is what
the audit log records as the error code.
"""

from __future__ import annotations

from typing import Any

from app.errors import DomainError


class OAuthError(DomainError):
    code = "invalid_request"
    status = 400
    retry_after: int | None = None

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.message}


class InvalidRequest(OAuthError):
    """A malformed request, or a subject / actor token that is not acceptable (§2.2.2)."""


class InvalidClient(OAuthError):
    """No client authentication, an unknown client or a wrong credential (RFC 6749 §5.2)."""

    code = "invalid_client"
    status = 401


class UnsupportedGrantType(OAuthError):
    code = "unsupported_grant_type"


class InvalidTarget(OAuthError):
    """Audience or resource unknown, or not in the client's allow-list (RFC 8693 §2.2.2)."""

    code = "invalid_target"


class InvalidScope(OAuthError):
    code = "invalid_scope"


class UnauthorizedClient(OAuthError):
    """No grant for the integration, or the grant was revoked."""

    code = "unauthorized_client"


class UserNotProvisioned(OAuthError):
    """The user has no identity in the upstream system (CONTRACT §3): final, not retryable."""

    code = "user_not_provisioned"

    def __init__(self, integration: str) -> None:
        super().__init__(f"the user has no identity in integration {integration!r}")
        self.integration = integration

    def body(self) -> dict[str, Any]:
        return super().body() | {"integration": self.integration, "retryable": False}


class TemporarilyUnavailable(OAuthError):
    """The upstream, the store or the keys cannot answer now (503 with ``Retry-After``)."""

    code = "temporarily_unavailable"
    status = 503
    retry_after = 5


class InvalidGrant(OAuthError):
    """An upstream authorization server refused the exchange for a reason other than an
    unknown user (RFC 6749 §5.2 ``invalid_grant``): final for this request, not retryable."""

    code = "invalid_grant"

    def __init__(self, integration: str, upstream_error: str = "") -> None:
        said = f" ({upstream_error})" if upstream_error else ""
        super().__init__(f"integration {integration!r} refused the exchange{said}")
        self.integration = integration

    def body(self) -> dict[str, Any]:
        return super().body() | {"integration": self.integration, "retryable": False}
