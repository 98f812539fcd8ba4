"""Bearer tokens as RFC 6750 carries them, and the errors it defines (§3).

Accepted: the ``Authorization: Bearer`` header (§2.1), and on POST a form-encoded body field
``access_token`` (§2.2; OpenID Connect Core §5.3.1 asks userinfo to accept both GET and POST).
Refused: a token in the query string (§2.3) whatever else the request carries, since URLs
end up in logs, browser histories and ``Referer`` headers, and a request using more than one
method (§2). idbridge never logs a query string, so the refused token is not logged either.
"""

from __future__ import annotations

import re

from flask import Request

from app.errors import DomainError

_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


class BearerRequestError(DomainError):
    """The request is malformed as a bearer request (RFC 6750 §3.1 ``invalid_request``)."""

    code = "invalid_request"
    status = 400


class MissingToken(DomainError):
    """No credentials at all: 401 with a bare ``WWW-Authenticate: Bearer`` (§3.1)."""

    code = "unauthorized"
    status = 401


def bearer_token(request: Request, allow_form: bool = False) -> str:
    """The one access token the request presents, or a ``BearerRequestError`` / ``MissingToken``."""
    if "access_token" in request.args:
        raise BearerRequestError(
            "access tokens are not accepted in the query string (RFC 6750 §2.3): "
            "send an Authorization: Bearer header"
        )
    presented = []
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise MissingToken("a Bearer access token is required")
        if not value.strip():
            raise BearerRequestError("the Authorization header carries no token")
        presented.append(value.strip())
    if allow_form and request.mimetype == "application/x-www-form-urlencoded":
        form_token = request.form.get("access_token")
        if form_token is not None:
            presented.append(form_token)
    if len(presented) > 1:
        raise BearerRequestError("present the access token in one way only (RFC 6750 §2)")
    if not presented:
        raise MissingToken("a Bearer access token is required")
    return presented[0]


def challenge(realm: str, error: str | None = None, description: str | None = None) -> str:
    """A ``WWW-Authenticate`` value (RFC 6750 §3): quoted values stay within the allowed
    characters, so a message can never break the header."""
    parts = [f'realm="{_clean(realm)}"']
    if error:
        parts.append(f'error="{_clean(error)}"')
        if description:
            parts.append(f'error_description="{_clean(description)}"')
    return "Bearer " + ", ".join(parts)


def _clean(value: str) -> str:
    return _UNSAFE.sub("", value.replace('"', "'"))[:300]
