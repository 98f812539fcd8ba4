"""``/t/{tenant}/oauth/token``, ``/oauth/mappings``, ``/jwks.json`` and discovery (CONTRACT §3).

Thin views: read the form and the client's credentials, call one function of
``app.exchange``, render. Every answer of the token endpoint and the mapping query carries
``Cache-Control: no-store`` (RFC 6749 §5.1); errors are RFC 6749 §5.2 JSON
``{"error", "error_description"}`` (plus ``integration`` and ``retryable`` for
``user_not_provisioned``), ``invalid_client`` with ``WWW-Authenticate: Basic``, and
``temporarily_unavailable`` with ``Retry-After``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote

from flask import Request, Response, g, jsonify, request
from flask.views import MethodView
from flask_smorest import Api, Blueprint
from werkzeug.exceptions import TooManyRequests

from app import (
    assertions,
    exchange,
    issued,
    runtime,
    signing,
    tenants,
    tokens,
    upstream_guard,
)
from app.errors import DomainError, NotFound, StoreUnavailable
from app.oauth_errors import InvalidClient, InvalidRequest, OAuthError, TemporarilyUnavailable

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
CLIENT_AUTH_SCHEME = "clientSecretBasic"
TOKEN_ERRORS = "TokenEndpointError"
SINGLE_PARAMETERS = (
    "grant_type",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "scope",
    "requested_token_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
)
MAX_FORM_VALUES = 50

blp = Blueprint(
    "oauth-exchange",
    __name__,
    url_prefix="/t",
    description="Token exchange for the data broker (RFC 8693), the mapping query, the "
    "tenant's signing keys and discovery documents (CONTRACT §3).",
)


# --- rendering ----------------------------------------------------------------------------


def render_error(exc: DomainError) -> Response:
    """RFC 6749 §5.2, once, for every refusal of these operations."""
    headers = dict(NO_STORE)
    if isinstance(exc, OAuthError):
        status, body = exc.status, exc.body()
        if isinstance(exc, InvalidClient):
            headers["WWW-Authenticate"] = 'Basic realm="idbridge"'
        if exc.retry_after:
            headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, NotFound):
        status, body = 404, {"error": "not_found", "error_description": exc.message}
    elif isinstance(exc, StoreUnavailable):
        status = 503
        body = {"error": "temporarily_unavailable", "error_description": exc.message}
        headers["Retry-After"] = str(exc.retry_after)
    else:
        status, body = 400, {"error": "invalid_request", "error_description": exc.message}
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    return response


def render_too_many_requests(_exc: TooManyRequests) -> Response:
    """A rate limit (``app.limits``) refused the call: RFC 6749 §5.2 JSON with 429 (RFC 6585
    §4); flask-limiter adds ``Retry-After``."""
    body = {"error": "temporarily_unavailable", "error_description": "too many requests"}
    return _json(body, 429)


blp.register_error_handler(TooManyRequests, render_too_many_requests)


def _renders(view: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except DomainError as exc:
            return render_error(exc)

    wrapper.__name__, wrapper.__doc__ = view.__name__, view.__doc__
    wrapper.__dict__.update(view.__dict__)
    return wrapper


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or NO_STORE)
    return response


# --- reading the request ------------------------------------------------------------------


def _form(req: Request) -> dict[str, list[str]]:
    """The form parameters; RFC 6749 §3.2: each at most once, except RFC 8693's repeatable
    ``audience`` and ``resource``."""
    if req.mimetype != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    if req.args:
        raise InvalidRequest("parameters belong in the body, not the query string")
    form = {name: req.form.getlist(name) for name in req.form}
    for name in SINGLE_PARAMETERS:
        if len(form.get(name, [])) > 1:
            raise InvalidRequest(f"{name} must not be repeated")
    if sum(len(values) for values in form.values()) > MAX_FORM_VALUES:
        raise InvalidRequest("too many parameters")
    if any("\x00" in value for values in form.values() for value in values):
        raise InvalidRequest("parameters must not contain NUL characters")
    return form


def _one(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def credentials(req: Request, form: dict[str, list[str]] | None) -> exchange.ClientCredentials:
    """``client_secret_basic`` (RFC 6749 §2.3.1: form-urlencoded id and secret in HTTP Basic)
    or ``client_secret_post``; both at once is ``invalid_request``. Missing or unreadable
    credentials come back empty, so the domain refuses them as ``invalid_client`` and audits
    the attempt."""
    header = req.headers.get("Authorization")
    posted = form is not None and ("client_secret" in form or "client_id" in form)
    if form is not None and ("client_assertion" in form or "client_assertion_type" in form):
        if header is not None or "client_secret" in form:
            raise InvalidRequest("use one client authentication method")
        if _one(form, "client_assertion_type") != assertions.ASSERTION_TYPE:
            raise InvalidRequest("unsupported client_assertion_type")
        signed = _one(form, "client_assertion") or ""
        claimed = _one(form, "client_id") or assertions.claimed_client(signed)
        return exchange.ClientCredentials(claimed, "", "private_key_jwt", signed)
    if header is not None:
        if form is not None and "client_secret" in form:
            raise InvalidRequest("use one client authentication method")
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return exchange.ClientCredentials("", "", "none")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return exchange.ClientCredentials("", "", "client_secret_basic")
        client_id, _, secret = decoded.partition(":")
        return exchange.ClientCredentials(
            unquote(client_id), unquote(secret), "client_secret_basic"
        )
    if form is not None and posted:
        return exchange.ClientCredentials(
            _one(form, "client_id") or "", _one(form, "client_secret") or "", "client_secret_post"
        )
    return exchange.ClientCredentials("", "", "none")


def _request_id() -> str:
    return str(g.get("request_id", ""))


# --- documentation ------------------------------------------------------------------------


def document(api: Api) -> None:
    api.spec.components.security_scheme(
        CLIENT_AUTH_SCHEME,
        {
            "type": "http",
            "scheme": "basic",
            "description": "client_secret_basic (RFC 6749 §2.3.1); the token endpoint also "
            "accepts client_secret_post.",
        },
    )
    api.spec.components.response(
        TOKEN_ERRORS,
        {
            "description": "RFC 6749 §5.2 error: `invalid_request`, `invalid_client` (401), "
            "`invalid_target`, `invalid_scope`, `unauthorized_client`, `unsupported_grant_type`, "
            "`user_not_provisioned` and `invalid_grant` (an upstream refused; both with "
            "`integration` and `retryable: false`), `temporarily_unavailable` (503, with "
            "`Retry-After`; 429 with `Retry-After` past a rate limit), `not_found` (404, no "
            "such tenant).",
            "headers": {"Cache-Control": {"schema": {"type": "string"}, "required": True}},
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        },
    )


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "error_description": {"type": "string"},
        "integration": {"type": "string"},
        "retryable": {"type": "boolean"},
    },
}
_ROUTER_404 = {
    "description": "No such tenant, or a path that is not a well-formed tenant slug.",
    "content": {
        "application/json": {
            "schema": {"anyOf": [_ERROR_SCHEMA, {"$ref": "#/components/schemas/Error"}]}
        }
    },
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): _ROUTER_404
        if status == 404
        else {"$ref": f"#/components/responses/{TOKEN_ERRORS}"}
        for status in (*statuses, 429)  # every operation here is rate limited (app.limits)
    }


_TOKEN_FORM = {
    "type": "object",
    "properties": {
        "grant_type": {"type": "string", "example": exchange.GRANT_TYPE},
        "subject_token": {"type": "string"},
        "subject_token_type": {"type": "string", "example": exchange.ACCESS_TOKEN_TYPE},
        "audience": {
            "type": "string",
            "description": "An integration's name or upstream audience URI (repeatable).",
        },
        "resource": {"type": "string", "description": "An integration's upstream URI."},
        "scope": {"type": "string"},
        "requested_token_type": {"type": "string"},
        "actor_token": {"type": "string"},
        "actor_token_type": {"type": "string"},
        "client_id": {"type": "string", "description": "client_secret_post"},
        "client_secret": {"type": "string", "description": "client_secret_post"},
        "client_assertion_type": {"type": "string", "example": assertions.ASSERTION_TYPE},
        "client_assertion": {"type": "string", "description": "private_key_jwt (RFC 7523)"},
    },
}
_TOKEN_RESPONSE = {
    "type": "object",
    "required": ["access_token", "issued_token_type", "token_type", "expires_in"],
    "properties": {
        "access_token": {"type": "string"},
        "issued_token_type": {"type": "string"},
        "token_type": {"type": "string"},
        "expires_in": {"type": "integer"},
        "scope": {"type": "string"},
        "instance_url": {
            "type": "string",
            "description": "Salesforce integrations: the org's REST base URL, as Salesforce "
            "answered it.",
        },
        "api_instance_url": {
            "type": "string",
            "description": "Salesforce integrations: the API base URL, as Salesforce answered it.",
        },
    },
}


# --- views --------------------------------------------------------------------------------


@blp.route("/<slug:tenant>/oauth/token")
class Token(MethodView):
    @blp.doc(
        security=[{CLIENT_AUTH_SCHEME: []}, {}],
        requestBody={
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": _TOKEN_FORM}},
        },
        responses={
            "200": {
                "description": "The upstream token (RFC 8693 §2.2.1).",
                "headers": {"Cache-Control": {"schema": {"type": "string"}, "required": True}},
                "content": {"application/json": {"schema": _TOKEN_RESPONSE}},
            },
            **_errors(400, 401, 404, 503),
        },
    )
    @_renders
    def post(self, tenant: str) -> Response:
        """Token exchange (RFC 8693)

        The data broker presents the user's identity-provider access token (`subject_token`)
        and names an integration (`audience` or `resource`); idbridge answers a user-scoped
        upstream token or a final reason why not. Client authentication: client_secret_basic,
        client_secret_post or private_key_jwt (RFC 7523). Every outcome is audited.
        """
        form = _form(request)
        creds = credentials(request, form)
        exchange_request = exchange.ExchangeRequest(
            grant_type=_one(form, "grant_type") or "",
            subject_token=_one(form, "subject_token") or "",
            subject_token_type=_one(form, "subject_token_type") or "",
            audiences=tuple(form.get("audience", [])),
            resources=tuple(form.get("resource", [])),
            scope=_one(form, "scope"),
            requested_token_type=_one(form, "requested_token_type"),
            actor_token=_one(form, "actor_token"),
            actor_token_type=_one(form, "actor_token_type"),
        )
        answer = exchange.exchange(
            runtime.current(),
            tokens.current(),
            upstream_guard.of_current(),
            tenant,
            creds,
            exchange_request,
            _request_id(),
        )
        return _json(answer.body())


@blp.route("/<slug:tenant>/oauth/mappings")
class Mappings(MethodView):
    @blp.doc(
        security=[{CLIENT_AUTH_SCHEME: []}],
        parameters=[
            {"name": "integration", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "subject", "in": "query", "required": True, "schema": {"type": "string"}},
        ],
        responses={
            "200": {
                "description": "The user's upstream subject.",
                "headers": {"Cache-Control": {"schema": {"type": "string"}, "required": True}},
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": [
                                "integration",
                                "subject",
                                "upstream_subject",
                                "provisioned",
                            ],
                            "properties": {
                                "integration": {"type": "string"},
                                "subject": {"type": "string"},
                                "upstream_subject": {"type": "string"},
                                "provisioned": {"type": "boolean"},
                            },
                        }
                    }
                },
            },
            **_errors(400, 401, 503),
            "404": {
                "description": "`user_not_provisioned`, or no such tenant.",
                "headers": {"Cache-Control": {"schema": {"type": "string"}}},
                "content": _ROUTER_404["content"],
            },
        },
    )
    @_renders
    def get(self, tenant: str) -> Response:
        """Mapping query

        Who the user is in an integration, answered by the exchange's own code path, with
        the same client authentication (client_secret_basic) and grant check.
        """
        creds = credentials(request, None)
        if any("\x00" in value for value in request.args.values()):
            raise InvalidRequest("parameters must not contain NUL characters")
        try:
            answer = exchange.mapping(
                runtime.current(),
                tenant,
                creds,
                request.args.get("integration", ""),
                request.args.get("subject", ""),
                _request_id(),
            )
        except OAuthError as exc:
            if exc.code == "user_not_provisioned":
                return _json(exc.body(), 404)
            raise
        return _json(
            {
                "integration": answer.integration,
                "subject": answer.subject,
                "upstream_subject": answer.upstream_subject,
                "provisioned": True,
            }
        )


def _keys_document(slug: str) -> dict[str, Any]:
    rt = runtime.current()
    with rt.db.read() as session:
        tenants.find(session, slug)
        document = signing.jwks(session)
    if document["keys"]:
        return document
    with rt.db.transaction() as session:
        tenant = tenants.find(session, slug)
        signing.ensure_key(session, rt.keyring, tenant)
        return signing.jwks(session)


_JWKS_SCHEMA = {
    "type": "object",
    "required": ["keys"],
    "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
}
_PUBLIC = {"Cache-Control": "public, max-age=300"}


@blp.route("/<slug:tenant>/jwks.json")
class Jwks(MethodView):
    @blp.doc(
        responses={
            "200": {
                "description": "The tenant's public signing keys (RFC 7517 §5): the key that "
                "signs now, the next one ahead of its first use, and retired ones until their "
                "last token expired.",
                "content": {"application/json": {"schema": _JWKS_SCHEMA}},
            },
            **_errors(404, 503),
        }
    )
    @_renders
    def get(self, tenant: str) -> Response:
        """Signing keys (JWKS)"""
        try:
            return _json(_keys_document(tenant), headers=_PUBLIC)
        except StoreUnavailable as exc:
            raise TemporarilyUnavailable(exc.message) from None


def _metadata(slug: str, openid: bool) -> dict[str, Any]:
    rt = runtime.current()
    with rt.db.read() as session:
        tenants.find(session, slug)
    issuer = exchange.issuer_of(rt, slug)
    document: dict[str, Any] = {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/jwks.json",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "grant_types_supported": [exchange.GRANT_TYPE],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "response_types_supported": [],
        "scopes_supported": [],
    }
    if openid:
        document |= {
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [signing.ALGORITHM],
        }
    return document


_METADATA_SCHEMA = {
    "type": "object",
    "required": ["issuer", "token_endpoint", "jwks_uri"],
    "properties": {
        "issuer": {"type": "string"},
        "token_endpoint": {"type": "string"},
        "jwks_uri": {"type": "string"},
    },
}


def _metadata_doc(description: str) -> dict[str, Any]:
    return {
        "responses": {
            "200": {
                "description": description,
                "content": {"application/json": {"schema": _METADATA_SCHEMA}},
            },
            **_errors(404, 503),
        }
    }


@blp.route("/<slug:tenant>/.well-known/oauth-authorization-server")
class AuthorizationServerMetadata(MethodView):
    @blp.doc(**_metadata_doc("RFC 8414 authorization server metadata."))
    @_renders
    def get(self, tenant: str) -> Response:
        """Authorization server metadata (RFC 8414)"""
        return _json(_metadata(tenant, openid=False), headers=_PUBLIC)


@blp.route("/<slug:tenant>/.well-known/openid-configuration")
class OpenIdConfiguration(MethodView):
    @blp.doc(**_metadata_doc("OpenID Connect Discovery 1.0 provider metadata."))
    @_renders
    def get(self, tenant: str) -> Response:
        """OpenID provider metadata"""
        return _json(_metadata(tenant, openid=True), headers=_PUBLIC)


_TOKEN_PARAMETER_FORM = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "properties": {
                    "token": {"type": "string"},
                    "token_type_hint": {"type": "string"},
                    "client_id": {"type": "string"},
                    "client_secret": {"type": "string"},
                    "client_assertion_type": {"type": "string"},
                    "client_assertion": {"type": "string"},
                },
            }
        }
    },
}


def _token_parameter(form: dict[str, list[str]]) -> str:
    if len(form.get("token", [])) != 1 or len(form.get("token_type_hint", [])) > 1:
        raise InvalidRequest("one token parameter is required")
    return form["token"][0]


@blp.route("/<slug:tenant>/oauth/introspect")
class Introspect(MethodView):
    @blp.doc(
        security=[{CLIENT_AUTH_SCHEME: []}, {}],
        requestBody=_TOKEN_PARAMETER_FORM,
        responses={
            "200": {
                "description": "RFC 7662 §2.2: `active` and, when true, the token's claims.",
                "headers": {"Cache-Control": {"schema": {"type": "string"}, "required": True}},
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["active"],
                            "properties": {"active": {"type": "boolean"}},
                        }
                    }
                },
            },
            **_errors(400, 401, 404, 503),
        },
    )
    @_renders
    def post(self, tenant: str) -> Response:
        """Token introspection (RFC 7662)

        For a token idbridge issued to the calling client: its claims with `active: true`;
        for anything else (unknown, expired, revoked, another client's) `active: false`.
        """
        form = _form(request)
        token = _token_parameter(form)
        answer = issued.introspect(runtime.current(), tenant, credentials(request, form), token)
        return _json(answer)


@blp.route("/<slug:tenant>/oauth/revoke")
class Revoke(MethodView):
    @blp.doc(
        security=[{CLIENT_AUTH_SCHEME: []}, {}],
        requestBody=_TOKEN_PARAMETER_FORM,
        responses={
            "200": {
                "description": "RFC 7009 §2.2: revoked, or not a token of this client (nothing "
                "to do).",
                "headers": {"Cache-Control": {"schema": {"type": "string"}, "required": True}},
            },
            **_errors(400, 401, 404, 503),
        },
    )
    @_renders
    def post(self, tenant: str) -> Response:
        """Token revocation (RFC 7009)

        Revokes a token idbridge issued to the calling client: introspection answers
        `active: false` for it from now on and it leaves the cache.
        """
        form = _form(request)
        token = _token_parameter(form)
        issued.revoke(runtime.current(), tenant, credentials(request, form), token)
        return Response(status=200, headers=NO_STORE)
