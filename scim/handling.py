"""Serving one SCIM request: the token, one tenant-scoped transaction, scim2-server's
handler over ``SqlStorage``, and the rendering of every outcome in RFC 7644 form."""

from __future__ import annotations

import json
from functools import cache

from flask import Response, request
from scim2_models import (
    Error,
    NotFoundException,
    SCIMException,
    UnauthorizedException,
    UniquenessException,
)
from scim2_server.handler import ScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import SCIM_MEDIA_TYPE, ScimResponse
from sqlalchemy.orm import Session

from app import credentials, runtime, tenants
from app.crypto import Keyring
from app.errors import Conflict, DomainError, NotFound, StoreUnavailable
from scim import resources
from scim.service import IdbridgeScimService
from scim.storage import SqlStorage


@cache
def service() -> IdbridgeScimService:
    """The protocol, without state: one per process, shared by every app and tenant."""
    return IdbridgeScimService(resources.provider())


def dispatch(tenant: str, path: str) -> Response:
    """Serve one SCIM request of ``tenant``; ``path`` is relative to the SCIM root."""
    scim = service()
    rt = runtime.current()
    scim_request = ScimRequest(
        method=request.method,
        # meta.location and Location are absolute URLs as callers see them (RFC 7644 §3.1)
        base_url=f"{rt.settings.public_url.rstrip('/')}/t/{tenant}/scim/v2",
        path=path,
        query=request.args.to_dict(),
        headers=list(request.headers.items()),
        body=request.get_data(cache=False) if request.method in ("POST", "PUT", "PATCH") else b"",
    )
    public = path == "/ServiceProviderConfig"  # RFC 7644 §4: readable without a token
    reading = request.method == "GET"
    unit = rt.db.read() if reading else rt.db.transaction()
    try:
        with unit as session:
            try:
                tenant_row = tenants.find(session, tenant)
            except NotFound:
                if public:
                    raise NotFoundException(detail="no such tenant") from None
                raise UnauthorizedException(detail="a valid SCIM token is required") from None
            if not public:
                _authenticate(session, rt.keyring)
            response = ScimHandler(scim, SqlStorage(session, tenant_row, reading)).handle(
                scim_request
            )
    except SCIMException as exc:
        response = scim.error_response(exc)
    except StoreUnavailable as exc:
        response = error(503, exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
    except Conflict as exc:  # a race caught by a unique index at commit
        response = scim.error_response(_uniqueness(exc))
    except DomainError as exc:
        response = error(exc.status, exc.message)
    return render(response)


def _uniqueness(exc: DomainError) -> SCIMException:
    return UniquenessException(detail=exc.message)


def _authenticate(session: Session, keyring: Keyring) -> None:
    """RFC 7644 §2: a bearer token of THIS tenant; another tenant's token finds nothing."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedException(detail="a valid SCIM token is required")
    if credentials.scim_token_for(session, keyring, token) is None:
        raise UnauthorizedException(detail="a valid SCIM token is required")


def error(status: int, detail: str) -> ScimResponse:
    return ScimResponse(status, Error(status=status, detail=detail).model_dump())  # type: ignore[arg-type]


def render(response: ScimResponse) -> Response:
    body = b"" if response.body is None else json.dumps(response.body).encode()
    headers = dict(response.headers)
    headers.pop("Content-Type", None)
    if response.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="SCIM"'
    flask_response = Response(body, status=int(response.status), headers=headers)
    flask_response.content_type = SCIM_MEDIA_TYPE
    if response.body is None:
        flask_response.headers.pop("Content-Type", None)
    return flask_response
