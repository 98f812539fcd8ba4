"""``GET /t/{tenant}/verify-email?token=...``: where a verification link from idbridge's mail lands.

A plain, accessible HTML page (``lang``, ``title``, one ``h1``, one sentence; no script). The
token is used once (``app.email_tokens``); the answer never says which check refused it.
"""

from __future__ import annotations

import html
import re

from flask import Response, request
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException

from app import runtime, tenants, user_webhooks
from app.errors import DomainError, NotFound, StoreUnavailable
from app.schemas import SLUG

blp = Blueprint(
    "verify-email",
    __name__,
    url_prefix="/t/<slug>",
    description="The landing page of email verification links.",
)
_HTML = {"text/html": {"schema": {"type": "string"}}}
_TITLES = {
    200: "Email address confirmed",
    400: "This link does not work",
    404: "Page not found",
    503: "Please try again shortly",
}


def page(status: int, sentence: str) -> Response:
    title = _TITLES.get(status, "Something went wrong")
    body = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n<main>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(sentence)}</p>\n</main>\n</body>\n</html>\n"
    )
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token stays on this page
    return response


def render_domain_error(exc: DomainError) -> Response:
    if isinstance(exc, StoreUnavailable):
        response = page(
            503, "We could not confirm your address just now. Open the link again in a few minutes."
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if exc.status == 404:
        return page(404, "There is nothing at this address.")
    return page(
        400,
        "This link was already used, has expired, or was replaced by a newer one. "
        "Ask for a new verification email.",
    )


def render_http_error(exc: HTTPException) -> Response:
    return page(exc.code or 400, exc.description or exc.name)


blp.register_error_handler(DomainError, render_domain_error)
blp.register_error_handler(HTTPException, render_http_error)


@blp.route("/verify-email", methods=["GET"])
@blp.doc(
    operationId="verify_email_link",
    parameters=[
        {
            "in": "query",
            "name": "token",
            "required": True,
            "schema": {"type": "string", "maxLength": 200},
            "description": "The single-use token from the verification mail.",
        }
    ],
    responses={
        200: {"description": "The address is verified.", "content": _HTML},
        400: {"description": "Used, expired, replaced or unknown link.", "content": _HTML},
        404: {"description": "Unknown tenant.", "content": _HTML},
        503: {
            "description": "Try again later; the link stays usable.",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": _HTML,
        },
    },
)
def verify_email(slug: str) -> Response:
    """Confirm an email address from a verification link"""
    rt = runtime.current()
    token = request.args.get("token", "")
    if not re.fullmatch(SLUG, slug):
        raise NotFound("no such tenant")
    with rt.db.transaction() as session:
        tenant = tenants.find(session, slug)
        user_webhooks.verify_email_link(session, rt, tenant, token)
    return page(200, "Thank you: your email address is confirmed. You can close this page.")
