"""``/t/{tenant}/oidc/...``: userinfo, logout (API and RP-initiated), back-channel logout.

Three error dialects, one per caller:

- userinfo and API logout (bearer resources): RFC 6750 §3, 401 with ``WWW-Authenticate: Bearer
  realm="idbridge", error="invalid_token", error_description="..."`` (a bare ``Bearer
  realm=...`` when no token came at all), 400 ``invalid_request`` for a token in the query
  string, and the same as JSON ``{"error", "error_description"}``;
- RP-initiated logout (a browser): an accessible HTML page, 400 on any problem, never a
  redirect to a URI the tenant did not list;
- back-channel logout (the IdP): ``{"error": "invalid_request"}`` 400 (Back-Channel Logout 1.0
  §2.8), 503 when keys or the store are unavailable, ``Cache-Control: no-store`` always.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Response, jsonify, redirect, request
from flask.views import MethodView
from flask_smorest import Api, Blueprint
from marshmallow import INCLUDE, Schema, fields

from app import oidc, runtime, tokens
from app.errors import Conflict, DomainError, InvalidInput, NotFound, StoreUnavailable
from app.tokens import InvalidToken, KeysUnavailable
from oauth.bearer import MissingToken, bearer_token, challenge

REALM = "idbridge"
ACCESS_TOKEN_SCHEME = "idpAccessToken"
BEARER_400 = "BearerInvalidRequest"
BEARER_401 = "BearerUnauthorized"
NOT_FOUND = "OidcTenantNotFound"
UNAVAILABLE = "OidcUnavailable"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

blp = Blueprint(
    "oidc",
    __name__,
    url_prefix="/t",
    description="The OIDC side for the platform's Users service and the tenant's identity "
    "provider: userinfo, logout, back-channel logout (CONTRACT §2).",
)


class UserinfoClaims(Schema):
    """OpenID Connect Core §5.1 claims of the user; unknown values are omitted."""

    class Meta:
        unknown = INCLUDE

    sub = fields.String(required=True, metadata={"description": "The User id."})
    tenant = fields.String(required=True)
    email = fields.String()
    email_verified = fields.Boolean()
    customer = fields.String(
        metadata={"description": "The customer; the claim's name is the tenant's customer_claim."}
    )
    name = fields.String()
    given_name = fields.String()
    family_name = fields.String()
    middle_name = fields.String()
    nickname = fields.String()
    preferred_username = fields.String()
    profile = fields.String()
    locale = fields.String()
    zoneinfo = fields.String()
    phone_number = fields.String()
    updated_at = fields.Integer()


class OAuthError(Schema):
    error = fields.String(required=True)
    error_description = fields.String()


# --- rendering ----------------------------------------------------------------------------


def _json_error(status: int, error: str, description: str, headers: dict[str, str]) -> Response:
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    response.headers.update(NO_STORE | headers)
    return response


def render_bearer_error(exc: DomainError) -> Response:
    """RFC 6750 §3 for the bearer resources (userinfo, API logout)."""
    if isinstance(exc, MissingToken):
        return _json_error(401, exc.code, exc.message, {"WWW-Authenticate": challenge(REALM)})
    if isinstance(exc, InvalidToken):
        header = challenge(REALM, "invalid_token", exc.message)
        return _json_error(401, "invalid_token", exc.message, {"WWW-Authenticate": header})
    if isinstance(exc, NotFound):
        return _json_error(404, "not_found", exc.message, {})
    if isinstance(exc, StoreUnavailable | KeysUnavailable | Conflict):
        return _unavailable(exc)
    header = challenge(REALM, "invalid_request", exc.message)
    return _json_error(400, "invalid_request", exc.message, {"WWW-Authenticate": header})


def render_backchannel_error(exc: DomainError) -> Response:
    """Back-Channel Logout 1.0 §2.8: 400 with an OAuth error body; 503 when the keys or the
    store cannot answer, so the IdP retries instead of giving up."""
    if isinstance(exc, StoreUnavailable | KeysUnavailable | Conflict):
        return _unavailable(exc)
    return _json_error(400, "invalid_request", exc.message, {})


def _unavailable(exc: DomainError) -> Response:
    """503 with ``Retry-After``: the store or the keys cannot answer now, or a concurrent
    request changed the same rows first (a ``Conflict`` from the store; a retry succeeds)."""
    retry = {"Retry-After": str(getattr(exc, "retry_after", 1))}
    return _json_error(503, "temporarily_unavailable", exc.message, retry)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;
line-height:1.5;color:#1a1a1a;background:#fff}}</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p>{message}</p>
</main>
</body>
</html>
"""


def page(status: int, title: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """A plain, accessible HTML page (one heading, one paragraph, a language, no script)."""
    body = PAGE.format(title=html.escape(title), message=html.escape(message))
    response = Response(body, status=status, mimetype="text/html")
    response.headers.update(
        NO_STORE
        | {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
        | (headers or {})
    )
    return response


def render_logout_page_error(exc: DomainError) -> Response:
    if isinstance(exc, NotFound):
        return page(404, "Sign-out failed", exc.message)
    if isinstance(exc, StoreUnavailable | KeysUnavailable | Conflict):
        retry = {"Retry-After": str(getattr(exc, "retry_after", 1))}
        return page(503, "Sign-out failed", "Please try again in a moment.", retry)
    return page(400, "Sign-out failed", exc.message)


def _renders(renderer: Callable[[DomainError], Response]) -> Callable[..., Any]:
    """Run a view, rendering domain errors with ``renderer`` (one dialect per operation)."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return view(*args, **kwargs)
            except DomainError as exc:
                return renderer(exc)

        wrapper.__name__, wrapper.__doc__ = view.__name__, view.__doc__
        wrapper.__dict__.update(view.__dict__)
        return wrapper

    return decorator


# --- documentation ------------------------------------------------------------------------


def _error_content() -> dict[str, Any]:
    return {"application/json": {"schema": OAuthError}}


_OAUTH_OR_ROUTER_ERROR = {
    "anyOf": [
        {"$ref": "#/components/schemas/OAuthError"},
        {"$ref": "#/components/schemas/Error"},
    ]
}


def document(api: Api) -> None:
    """The security scheme and the error responses the operations below refer to."""
    api.spec.components.schema("OAuthError", schema=OAuthError)
    api.spec.components.security_scheme(
        ACCESS_TOKEN_SCHEME,
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token of the tenant's identity provider (RFC 9068), "
            "validated against the tenant's trusted issuer.",
        },
    )
    challenge_header = {
        "WWW-Authenticate": {
            "description": 'RFC 6750 §3: `Bearer realm="idbridge"` when no token was '
            'presented; with `error="invalid_token"` and `error_description` when it was '
            "refused.",
            "schema": {"type": "string"},
            "required": True,
        }
    }
    api.spec.components.response(
        BEARER_401,
        {
            "description": "No token, or the token is refused (bad signature, algorithm, "
            "issuer, audience, expiry, type; the session ended; the user is unknown or "
            "blocked).",
            "headers": challenge_header,
            "content": {"application/json": {"schema": "OAuthError"}},
        },
    )
    api.spec.components.response(
        BEARER_400,
        {
            "description": "A malformed bearer request (RFC 6750 §3.1 `invalid_request`): a "
            "token in the query string, or more than one way of presenting it.",
            "headers": {
                "WWW-Authenticate": {
                    "description": 'RFC 6750 §3: `Bearer realm="idbridge", '
                    'error="invalid_request", error_description="..."`.',
                    "schema": {"type": "string"},
                    "required": True,
                }
            },
            "content": {"application/json": {"schema": "OAuthError"}},
        },
    )
    api.spec.components.response(
        NOT_FOUND,
        {
            "description": "No such tenant (`not_found`). A path that is not a well-formed "
            "tenant slug never reaches the operation: the router answers it in the API's "
            "generic `Error` shape.",
            "content": {"application/json": {"schema": _OAUTH_OR_ROUTER_ERROR}},
        },
    )
    api.spec.components.response(
        UNAVAILABLE,
        {
            "description": "The database or the identity provider's signing keys cannot be "
            "had now; retry after the given seconds.",
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer"},
                    "required": True,
                }
            },
            "content": {"application/json": {"schema": "OAuthError"}},
        },
    )


def bearer_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    for status, ref in ((503, UNAVAILABLE), (404, NOT_FOUND), (401, BEARER_401), (400, BEARER_400)):
        view = blp.alt_response(status, response=ref)(view)
    return blp.doc(security=[{ACCESS_TOKEN_SCHEME: []}])(view)


def _html(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"text/html": {"schema": {"type": "string"}}},
    } | ({"headers": headers} if headers else {})


_FORM_TOKEN_BODY = {
    "required": False,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "properties": {
                    "access_token": {
                        "type": "string",
                        "description": "RFC 6750 §2.2: the access token, when not sent in the "
                        "Authorization header (never both).",
                    }
                },
            }
        }
    },
}


# --- views --------------------------------------------------------------------------------


def _userinfo(slug: str, token: str) -> Response:
    rt = runtime.current()
    claims = oidc.userinfo(rt.db, tokens.current(), slug, token)
    response = jsonify(claims)
    response.headers.update(NO_STORE)
    return response


@blp.route("/<slug:tenant>/oidc/userinfo")
class Userinfo(MethodView):
    @blp.alt_response(200, schema=UserinfoClaims, description="The user's claims.")
    @bearer_errors
    @_renders(render_bearer_error)
    def get(self, tenant: str) -> Response:
        """OpenID Connect userinfo

        The claims (OpenID Connect Core §5.3) of the user the bearer access token names, if
        the token is a valid access token of the tenant's identity provider: signature by a
        key of its JWKS, a pinned algorithm, the exact issuer, one of the tenant's audiences,
        not expired, its session not ended by a logout. `sub` is the User id, `tenant` the
        tenant, the customer claim is named by the tenant's `customer_claim`. A token in the
        query string is refused. Answering counts a login when the token shows a new session.
        """
        return _userinfo(tenant, bearer_token(request))

    @blp.alt_response(200, schema=UserinfoClaims, description="The user's claims.")
    @bearer_errors
    @blp.doc(requestBody=_FORM_TOKEN_BODY)
    @_renders(render_bearer_error)
    def post(self, tenant: str) -> Response:
        """OpenID Connect userinfo (POST)

        As GET; the access token may also come as the form field `access_token` (RFC 6750
        §2.2) instead of the Authorization header.
        """
        return _userinfo(tenant, bearer_token(request, allow_form=True))


@blp.route("/<slug:tenant>/oidc/logout")
class Logout(MethodView):
    @blp.doc(
        parameters=[
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": description,
            }
            for name, description in (
                ("id_token_hint", "An ID token of the user (expired is fine): whose session."),
                (
                    "post_logout_redirect_uri",
                    "Where to send the browser after: exactly one of the tenant's "
                    "`logout_redirect_uris`.",
                ),
                ("state", "Given back as `state` on the redirect."),
                ("client_id", "Accepted and ignored."),
                ("logout_hint", "Accepted and ignored."),
                ("ui_locales", "Accepted and ignored."),
            )
        ],
        responses={
            "200": _html("Signed out; no redirect URI was given."),
            "302": {
                "description": "Signed out; redirected to the registered URI with `state`.",
                "headers": {
                    "Location": {"schema": {"type": "string"}, "required": True},
                },
            },
            "400": _html(
                "Nothing was done: no or an invalid `id_token_hint`, or a redirect URI the "
                "tenant did not register (no redirect then)."
            ),
            "404": {
                "description": "No such tenant (an HTML page; a malformed slug gets the "
                "router's JSON `Error`).",
                "content": {
                    "text/html": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
                },
            },
            "503": _html(
                "The store or the signing keys cannot answer now.",
                {"Retry-After": {"schema": {"type": "integer"}, "required": True}},
            ),
        },
    )
    @_renders(render_logout_page_error)
    def get(self, tenant: str) -> Response:
        """RP-initiated logout (browser)

        OpenID Connect RP-Initiated Logout 1.0: ends the session named by `id_token_hint`
        (its `sid`, else every session of its user) before answering, then redirects to
        `post_logout_redirect_uri` (with `state`) if the tenant registered it exactly, or
        shows a "you are signed out" page.
        """
        rt = runtime.current()
        target_uri = request.args.get("post_logout_redirect_uri") or None
        with rt.db.transaction() as session:
            target = oidc.rp_logout(
                session,
                rt,
                tokens.current(),
                tenant,
                request.args.get("id_token_hint"),
                target_uri,
            )
        if target is None:
            return page(
                200, "You are signed out", "You have been signed out. You may close this page."
            )
        response = redirect(_with_state(target, request.args.get("state")), code=302)
        response.headers.update(NO_STORE)
        return response

    @blp.alt_response(204, description="The session ended.")
    @bearer_errors
    @_renders(render_bearer_error)
    def post(self, tenant: str) -> Response:
        """API logout

        Ends the session of the bearer access token (its `sid`; without one, every session of
        its user) before answering: from then on every token of that session issued up to
        now is refused, on every instance.
        """
        token = bearer_token(request)
        rt = runtime.current()
        with rt.db.transaction() as session:
            oidc.api_logout(session, rt, tokens.current(), tenant, token)
        return Response(status=204, headers=NO_STORE)


def _with_state(uri: str, state: str | None) -> str:
    """``uri`` with ``state`` added to its query (RP-Initiated Logout 1.0 §3)."""
    if state is None:
        return uri
    parts = urlsplit(uri)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("state", state)]
    return urlunsplit(parts._replace(query=urlencode(query)))


@blp.route("/<slug:tenant>/oidc/backchannel-logout")
class BackchannelLogout(MethodView):
    @blp.doc(
        requestBody={
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["logout_token"],
                        "properties": {"logout_token": {"type": "string"}},
                    }
                }
            },
        },
        responses={
            "200": {
                "description": "The session(s) the logout token names ended.",
                "headers": {"Cache-Control": {"schema": {"type": "string"}, "required": True}},
            },
            "400": {
                "description": "The logout token is missing, invalid, or replayed (§2.8).",
                "headers": {"Cache-Control": {"schema": {"type": "string"}, "required": True}},
                "content": {"application/json": {"schema": "OAuthError"}},
            },
            "404": {"$ref": f"#/components/responses/{NOT_FOUND}"},
            "503": {"$ref": f"#/components/responses/{UNAVAILABLE}"},
        },
    )
    @_renders(render_backchannel_error)
    def post(self, tenant: str) -> Response:
        """Back-channel logout

        OpenID Connect Back-Channel Logout 1.0, from the tenant's identity provider: the
        `logout_token` is validated per §2.6 (issuer, signature, `aud` one of the tenant's
        audiences or its connector `client_id`, `iat`, `jti`, the back-channel logout event,
        `sid` and/or `sub`, no `nonce`); a `jti` seen before is refused. The sessions it names
        end before the answer.
        """
        logout_token = (
            request.form.get("logout_token")
            if request.mimetype == "application/x-www-form-urlencoded"
            else None
        )
        if not logout_token:
            return render_backchannel_error(InvalidInput("a logout_token form field is required"))
        with runtime.current().db.transaction() as session:
            oidc.backchannel_logout(session, tokens.current(), tenant, logout_token)
        return Response(status=200, headers=NO_STORE)
