"""The admin API's wire forms: request schemas built on ``app.schemas`` (the field rules
``idbridge apply`` shares), response schemas, and the conversion of rows into responses.

Requests: a create takes the full schema; a PATCH takes the same fields, each optional, and a
section that is present (``idp``, ``users``, ``user_mapping``, ...) replaces the stored one
whole. Identifiers (slug, client_id, name) are in the URL and never change, so a PATCH body
refuses them like any unknown field.

Responses never carry a stored secret. A secret idbridge generated is shown once, in the
response that created it; afterwards only ``*_set: true`` says one exists.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, missing, validate

from app import schemas as rules
from app.models import Client as ClientRow
from app.models import Grant as GrantRow
from app.models import Integration as IntegrationRow
from app.models import ScimToken as ScimTokenRow
from app.models import Tenant as TenantRow
from app.models import WebhookSecret as WebhookSecretRow

WEBHOOK_SECRET_ID = r"^whk_[0-9a-f]{16}$"
SCIM_TOKEN_ID = r"^sct_[0-9a-f]{16}$"


class Patch:
    """Every top-level field optional; a nested section that is given is loaded whole.

    A field left out means "leave it as it is", so the top-level defaults are dropped (from
    loading and from the document); the defaults inside a section that is given still apply.
    """

    _declared_fields: dict[str, fields.Field]

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("partial", tuple(self._declared_fields))
        super().__init__(**kwargs)  # type: ignore[call-arg]
        for field in self.fields.values():
            field.load_default = missing


# --- requests ------------------------------------------------------------------------------


class TenantCreate(rules.TenantSchema):
    """A new tenant; sections left out take their defaults."""


class TenantPatch(Patch, rules.TenantSchema):
    """Changes to a tenant: sections given replace the stored ones; `idp: null` removes it."""

    class Meta(rules.TenantSchema.Meta):
        exclude = ("slug",)


class TenantListQuery(Schema):
    limit = fields.Integer(
        validate=validate.Range(1, 500),
        load_default=100,
        metadata={"description": "Tenants per page."},
    )
    after = fields.String(
        validate=validate.Regexp(rules.SLUG),
        metadata={"description": "The previous page's `next`: list tenants after this slug."},
    )


class ClientCreate(rules.ClientSchema):
    """A new OAuth client. Without `secret` or `jwks` a secret is generated and shown once."""

    secret = fields.String(
        load_only=True,
        validate=validate.Length(32, 4000),
        metadata={"description": "Use this client secret instead of a generated one."},
    )


class ClientPatch(Patch, rules.ClientSchema):
    """Changes to a client; rotate its secret with `POST .../secret`."""

    class Meta(rules.ClientSchema.Meta):
        exclude = ("client_id",)


class IntegrationCreate(rules.IntegrationSchema):
    """A new integration (upstream system)."""

    client_secret = fields.String(
        load_only=True,
        allow_none=True,
        validate=validate.Length(1, 4000),
        metadata={"description": "Upstream client secret; write-only, sealed at rest."},
    )


class IntegrationPatch(Patch, IntegrationCreate):
    """Changes to an integration; the result must still satisfy its kind's rules."""

    class Meta(IntegrationCreate.Meta):
        exclude = ("name",)


class GrantCreate(rules.Strict):
    client_id = fields.String(required=True, validate=validate.Regexp(rules.CLIENT_ID))
    integration = fields.String(required=True, validate=validate.Regexp(rules.NAME))


class GrantListQuery(Schema):
    include_revoked = fields.Boolean(
        load_default=False, metadata={"description": "Also list revoked grants."}
    )


class WebhookSecretCreate(rules.Strict):
    secret = fields.String(
        validate=validate.Length(1, 200),
        metadata={"description": "`whsec_` + base64 of 24 to 64 random bytes; default: new."},
    )


class ScimTokenCreate(rules.Strict):
    token = fields.String(
        validate=validate.Length(32, 4000),
        metadata={"description": "Use this token instead of a generated one."},
    )


def check_integration_patch(row: IntegrationRow, patch: dict[str, Any]) -> None:
    """Raise ``ValidationError`` if ``patch`` would leave ``row`` breaking its kind's rules."""
    schema = rules.IntegrationSchema()
    current = {name: getattr(row, name) for name in schema.fields}
    merged = current | {name: value for name, value in patch.items() if name != "client_secret"}
    schema.load(merged)


# --- responses -----------------------------------------------------------------------------


def _out(field: type[fields.Field], *args: Any, **kwargs: Any) -> fields.Field:
    """A response field that is always present."""
    return field(*args, required=True, **kwargs)


class TenantIdentityProvider(Schema):
    issuer = _out(fields.String)
    jwks_uri = _out(fields.String)
    audiences = _out(fields.List, fields.String())
    algorithms = _out(fields.List, fields.String())
    subject_claim = _out(fields.String)
    connector = _out(fields.String)
    connector_settings = _out(fields.Dict, keys=fields.String(), values=fields.String())
    connector_secret_set = _out(fields.Boolean)


class TenantUsers(Schema):
    id_attribute = _out(fields.String)
    customer_attribute = _out(fields.String)
    customer_required = _out(fields.Boolean)
    customer_claim = _out(fields.String)


class TenantMail(Schema):
    sender = _out(fields.String, data_key="from")
    password_reset_url = _out(fields.String)


class TenantOidc(Schema):
    logout_redirect_uris = _out(fields.List, fields.String())


class TenantSummary(Schema):
    slug = _out(fields.String)
    display_name = _out(fields.String)
    created_at = _out(fields.DateTime)
    updated_at = _out(fields.DateTime)


class Tenant(TenantSummary):
    idp = _out(fields.Nested, TenantIdentityProvider, allow_none=True)
    users = _out(fields.Nested, TenantUsers)
    mail = _out(fields.Nested, TenantMail)
    oidc = _out(fields.Nested, TenantOidc)


class TenantPage(Schema):
    items = _out(fields.List, fields.Nested(TenantSummary))
    next = _out(
        fields.String,
        allow_none=True,
        metadata={"description": "Pass as `after` for the next page; null on the last page."},
    )


class Client(Schema):
    client_id = _out(fields.String)
    description = _out(fields.String)
    audiences = _out(fields.List, fields.String())
    scopes = _out(fields.List, fields.String())
    may_impersonate = _out(fields.Boolean)
    may_delegate = _out(fields.Boolean)
    jwks = _out(fields.Dict, allow_none=True)
    secret_set = _out(fields.Boolean)
    created_at = _out(fields.DateTime)
    updated_at = _out(fields.DateTime)


class ClientWithSecret(Client):
    client_secret = fields.String(
        metadata={"description": "The generated secret: shown in this response only."}
    )


class Integration(Schema):
    name = _out(fields.String)
    kind = _out(fields.String)
    flow = _out(fields.String, allow_none=True)
    audience = _out(fields.String)
    resource = _out(fields.String)
    token_endpoint = _out(fields.String)
    client_id = _out(fields.String)
    client_secret_set = _out(fields.Boolean)
    user_mapping = _out(fields.Dict)
    scope_mapping = _out(fields.Dict)
    token_lifetime = _out(fields.Integer)
    settings = _out(fields.Dict)
    created_at = _out(fields.DateTime)
    updated_at = _out(fields.DateTime)


class Grant(Schema):
    client_id = _out(fields.String)
    integration = _out(fields.String)
    active = _out(fields.Boolean)
    created_at = _out(fields.DateTime)
    revoked_at = _out(fields.DateTime, allow_none=True)


class WebhookSecret(Schema):
    id = _out(fields.String)
    source = _out(fields.String)
    created_at = _out(fields.DateTime)


class WebhookSecretCreated(WebhookSecret):
    secret = _out(fields.String, metadata={"description": "Shown in this response only."})


class ScimToken(Schema):
    id = _out(fields.String)
    source = _out(fields.String)
    created_at = _out(fields.DateTime)
    last_used_at = _out(fields.DateTime, allow_none=True)


class ScimTokenCreated(ScimToken):
    token = _out(fields.String, metadata={"description": "Shown in this response only."})


# --- rows to responses ---------------------------------------------------------------------


def tenant_summary(row: TenantRow) -> dict[str, Any]:
    return {
        "slug": row.slug,
        "display_name": row.display_name,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def tenant(row: TenantRow) -> dict[str, Any]:
    """The whole tenant; reads its identity provider, so the session must be scoped to it."""
    idp = row.identity_provider
    return tenant_summary(row) | {
        "idp": None
        if idp is None
        else {
            "issuer": idp.issuer,
            "jwks_uri": idp.jwks_uri,
            "audiences": idp.audiences,
            "algorithms": idp.algorithms,
            "subject_claim": idp.subject_claim,
            "connector": idp.connector,
            "connector_settings": idp.connector_settings,
            "connector_secret_set": idp.connector_secret_sealed is not None,
        },
        "users": {
            "id_attribute": row.user_id_attribute,
            "customer_attribute": row.customer_attribute,
            "customer_required": row.customer_required,
            "customer_claim": row.customer_claim,
        },
        "mail": {"sender": row.mail_from, "password_reset_url": row.password_reset_url},
        "oidc": {"logout_redirect_uris": row.logout_redirect_uris},
    }


def client(row: ClientRow, secret: str | None = None) -> dict[str, Any]:
    body = {
        "client_id": row.client_id,
        "description": row.description,
        "audiences": row.audiences,
        "scopes": row.scopes,
        "may_impersonate": row.may_impersonate,
        "may_delegate": row.may_delegate,
        "jwks": row.jwks,
        "secret_set": row.secret_hash is not None,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    return body | ({"client_secret": secret} if secret else {})


def integration(row: IntegrationRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": row.kind,
        "flow": row.flow,
        "audience": row.audience,
        "resource": row.resource,
        "token_endpoint": row.token_endpoint,
        "client_id": row.client_id,
        "client_secret_set": row.client_secret_sealed is not None,
        "user_mapping": row.user_mapping,
        "scope_mapping": row.scope_mapping,
        "token_lifetime": row.token_lifetime,
        "settings": row.settings,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def grant(row: GrantRow) -> dict[str, Any]:
    return {
        "client_id": row.client.client_id,
        "integration": row.integration.name,
        "active": row.revoked_at is None,
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
    }


def webhook_secret(row: WebhookSecretRow, secret: str | None = None) -> dict[str, Any]:
    body = {"id": row.public_id, "source": row.source, "created_at": row.created_at}
    return body | ({"secret": secret} if secret else {})


def scim_token(row: ScimTokenRow, token: str | None = None) -> dict[str, Any]:
    body = {
        "id": row.public_id,
        "source": row.source,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
    }
    return body | ({"token": token} if token else {})
