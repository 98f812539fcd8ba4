"""Field rules for tenants, clients, integrations and credentials, shared by every writer.

The admin API (``admin/``) and the operator's file (``idbridge apply``) accept the same field
names with the same rules, so both are validated here, once. Unknown fields are errors
(``RAISE``), never silently dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates_schema,
)

from app import outbound

SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"
CLIENT_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$"
ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
CONNECTORS = ("none", "keycloak", "okta")
INTEGRATION_KINDS = ("snowflake", "jwt", "rfc8693", "salesforce")
FLOWS = ("brokered", "federated")
MAPPING_SOURCES = ("mapping_table", "subject", "claim", "email", "template")
MAX_URL_LENGTH = 2000  # the store's URL columns


def _absolute_url(value: str) -> None:
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. "http://[": a malformed IPv6 host
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError("must be an absolute http(s) URL")
    if len(value) > MAX_URL_LENGTH:
        raise ValidationError(f"must be at most {MAX_URL_LENGTH} characters")


def _optional_url(value: str) -> None:
    if value:
        _absolute_url(value)


PRIVATE_URLS_ALLOWED: ContextVar[bool] = ContextVar("private_urls_allowed", default=False)


@contextmanager
def private_urls(allowed: bool) -> Iterator[None]:
    """Judge the URLs idbridge calls as a deployment with ``IDBRIDGE_ALLOW_PRIVATE_URLS`` =
    ``allowed``. Each surface that writes them says so (the admin API per request, ``idbridge
    apply`` per file); where none does, literal private hosts are refused."""
    token = PRIVATE_URLS_ALLOWED.set(allowed)
    try:
        yield
    finally:
        PRIVATE_URLS_ALLOWED.reset(token)


def _outbound_url(value: str) -> None:
    """A URL idbridge calls: unambiguous, and no literal private host unless allowed (the rules
    of ``app.outbound``, so a URL accepted here is not refused at the call for its form)."""
    if len(value) > MAX_URL_LENGTH:
        raise ValidationError(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        outbound.check_configured_url(value, PRIVATE_URLS_ALLOWED.get())
    except outbound.OutboundRefused as exc:
        raise ValidationError(str(exc)) from None


def _optional_outbound_url(value: str) -> None:
    if value:
        _outbound_url(value)


def _unstorable(value: Any, path: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], str] | None:
    """Where ``value`` holds what no store keeps as given, and why: NUL characters or unpaired
    surrogates in text (PostgreSQL, UTF-8), NaN or infinity in numbers (JSON)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, "must be text without unpaired surrogates"
        return (path, "must not contain NUL characters") if "\x00" in value else None
    if isinstance(value, float) and not math.isfinite(value):
        return path, "must be a finite number"
    if not isinstance(value, dict | list):
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        found = _unstorable(key, (*path, key)) if isinstance(key, str) else None
        found = found if found is not None else _unstorable(item, (*path, key))
        if found is not None:
            return found
    return None


class Strict(Schema):
    class Meta:
        unknown = RAISE

    @pre_load
    def _storable(self, data: Any, **_: Any) -> Any:
        """Refuse values the store cannot keep as given: a 422 naming the field, never a 500."""
        found = _unstorable(data) if isinstance(data, dict) else None
        if found and found[0]:
            path, message = found
            errors: Any = [message]
            for key in reversed(path):
                errors = {key: errors}
            raise ValidationError(errors)
        return data


Url = lambda **kw: fields.String(validate=_absolute_url, **kw)  # noqa: E731
OutboundUrl = lambda **kw: fields.String(validate=_outbound_url, **kw)  # noqa: E731
ScopeList = lambda **kw: fields.List(  # noqa: E731
    fields.String(validate=validate.Regexp(r"^[\x21\x23-\x5b\x5d-\x7e]+$")), **kw
)


class IdentityProviderSchema(Strict):
    issuer = OutboundUrl(
        required=True, metadata={"description": "Exact `iss` of the IdP's tokens."}
    )
    jwks_uri = OutboundUrl(required=True)
    audiences = fields.List(fields.String(validate=validate.Length(1, 2000)), load_default=list)
    algorithms = fields.List(
        fields.String(validate=validate.OneOf(ALGORITHMS)),
        validate=validate.Length(min=1),
        load_default=lambda: ["RS256"],
    )
    subject_claim = fields.String(validate=validate.Length(1, 100), load_default="sub")
    connector = fields.String(validate=validate.OneOf(CONNECTORS), load_default="none")
    connector_settings = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        load_default=dict,
        metadata={"description": "Non-secret connector settings (base URL, realm, ...)."},
    )
    connector_secret = fields.String(
        load_only=True,
        validate=validate.Length(1, 4000),
        allow_none=True,
        metadata={"description": "The connector's credential; write-only, sealed at rest."},
    )

    @validates_schema
    def _connector_base_url(self, data: dict[str, Any], **_: Any) -> None:
        base_url = (data.get("connector_settings") or {}).get("base_url")
        if base_url:
            try:
                _outbound_url(base_url)
            except ValidationError as exc:
                raise ValidationError({"base_url": exc.messages}, "connector_settings") from None


class UsersSchema(Strict):
    id_attribute = fields.String(validate=validate.Length(1, 200), load_default="externalId")
    customer_attribute = fields.String(
        validate=validate.Length(1, 300),
        load_default="urn:ietf:params:scim:schemas:extension:idbridge:2.0:User:customer",
    )
    customer_required = fields.Boolean(load_default=True)
    customer_claim = fields.String(validate=validate.Length(1, 100), load_default="customer")


class MailSchema(Strict):
    sender = fields.Email(data_key="from", validate=validate.Length(max=320), load_default="")
    password_reset_url = fields.String(validate=_optional_url, load_default="")


class OidcSchema(Strict):
    logout_redirect_uris = fields.List(Url(), load_default=list)


class TenantSchema(Strict):
    slug = fields.String(required=True, validate=validate.Regexp(SLUG, error="must match {regex}"))
    display_name = fields.String(validate=validate.Length(max=200), load_default="")
    idp = fields.Nested(IdentityProviderSchema, allow_none=True, load_default=None)
    users = fields.Nested(UsersSchema, load_default=lambda: UsersSchema().load({}))
    mail = fields.Nested(MailSchema, load_default=lambda: MailSchema().load({}))
    oidc = fields.Nested(OidcSchema, load_default=lambda: OidcSchema().load({}))


class ClientSchema(Strict):
    client_id = fields.String(required=True, validate=validate.Regexp(CLIENT_ID))
    description = fields.String(validate=validate.Length(max=500), load_default="")
    audiences = fields.List(
        fields.String(validate=validate.Regexp(NAME)),
        load_default=list,
        metadata={"description": "Integration names this client may target."},
    )
    scopes = ScopeList(load_default=list)
    may_impersonate = fields.Boolean(load_default=False)
    may_delegate = fields.Boolean(load_default=False)
    jwks = fields.Dict(
        allow_none=True,
        load_default=None,
        metadata={"description": "Public keys (JWK Set) for `private_key_jwt` (RFC 7523)."},
    )

    @validates_schema
    def _jwks_shape(self, data: dict[str, Any], **_: Any) -> None:
        jwks = data.get("jwks")
        if jwks is not None and not (
            isinstance(jwks.get("keys"), list) and all(isinstance(k, dict) for k in jwks["keys"])
        ):
            raise ValidationError('must be a JWK Set: {"keys": [...]}', "jwks")
        if jwks and any("d" in key for key in jwks["keys"]):
            raise ValidationError("must hold public keys only", "jwks")


class IntegrationSchema(Strict):
    name = fields.String(required=True, validate=validate.Regexp(NAME))
    kind = fields.String(required=True, validate=validate.OneOf(INTEGRATION_KINDS))
    flow = fields.String(validate=validate.OneOf(FLOWS), allow_none=True, load_default=None)
    audience = fields.String(validate=validate.Length(max=2000), load_default="")
    resource = fields.String(validate=validate.Length(max=2000), load_default="")
    token_endpoint = fields.String(validate=_optional_outbound_url, load_default="")
    client_id = fields.String(validate=validate.Length(max=200), load_default="")
    user_mapping = fields.Dict(load_default=lambda: {"source": "mapping_table"})
    scope_mapping = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(),
        load_default=dict,
        metadata={"description": "Client scope -> upstream scope or role."},
    )
    token_lifetime = fields.Integer(validate=validate.Range(30, 86400), load_default=600)
    settings = fields.Dict(keys=fields.String(), load_default=dict)

    @validates_schema
    def _kind_rules(self, data: dict[str, Any], partial: Any = None, **_: Any) -> None:
        if partial:
            return
        kind = data.get("kind")
        if kind in ("snowflake", "jwt") and not data.get("audience"):
            raise ValidationError(f"is required for kind {kind!r}", "audience")
        if kind in ("rfc8693", "salesforce") and not data.get("token_endpoint"):
            raise ValidationError(f"is required for kind {kind!r}", "token_endpoint")
        if kind == "rfc8693" and not data.get("flow"):
            raise ValidationError("is required for kind 'rfc8693' (brokered or federated)", "flow")
        if kind != "rfc8693" and data.get("flow"):
            raise ValidationError("applies to kind 'rfc8693' only", "flow")
        if kind in ("rfc8693", "salesforce"):
            _check_remote_settings(data.get("settings") or {})
        source = (data.get("user_mapping") or {}).get("source")
        if source not in MAPPING_SOURCES:
            raise ValidationError(
                f"source must be one of {', '.join(MAPPING_SOURCES)}", "user_mapping"
            )


CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
_POSITIVE_SETTINGS = ("breaker_failures", "breaker_cooldown", "negative_cache_seconds", "timeout")


def _check_remote_settings(settings: dict[str, Any]) -> None:
    """The ``settings`` keys ``app.upstream_remote`` and ``app.upstream_guard`` read, checked
    when the integration is written, so a bad value never reaches an exchange."""
    if settings.get("client_auth", CLIENT_AUTH_METHODS[0]) not in CLIENT_AUTH_METHODS:
        raise ValidationError(
            f"client_auth must be one of {', '.join(CLIENT_AUTH_METHODS)}", "settings"
        )
    for name in _POSITIVE_SETTINGS:
        value = settings.get(name, 1)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValidationError(f"{name} must be a positive number", "settings")
    if float(settings.get("timeout", 1)) > 30:
        raise ValidationError("timeout must be at most 30 seconds", "settings")
    for name in ("not_provisioned_errors", "not_provisioned_patterns"):
        values = settings.get(name, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValidationError(f"{name} must be a list of strings", "settings")
    for pattern in settings.get("not_provisioned_patterns", []):
        try:
            re.compile(pattern)
        except re.error:
            raise ValidationError(
                f"not a regular expression: {pattern[:100]!r}", "settings"
            ) from None
