"""The credentials identity-side callers present: webhook secrets and SCIM tokens.

Webhook secrets are HMAC keys idbridge must use to verify signatures (Standard Webhooks), so
they are sealed; SCIM tokens are only compared, so only their keyed hash is kept. Both exist
several at a time so a tenant can rotate without downtime: add the new one, move the caller,
delete the old one. A generated value is returned once, at creation, and never again.
"""

from __future__ import annotations

import base64
import binascii

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.crypto import Keyring, generate_token, generate_webhook_secret, public_id
from app.errors import Conflict, InvalidInput
from app.models import ScimToken, Tenant, WebhookSecret
from app.records import one_or_404

WEBHOOK_SECRET_PREFIX = "whsec_"
SCIM_TOKEN_PREFIX = "scim_"
MIN_TOKEN_LENGTH = 32


def webhook_secret_context(tenant: Tenant) -> str:
    return f"tenant:{tenant.id}:webhook-secret"


def validate_webhook_secret(secret: str) -> None:
    """A Standard Webhooks secret is ``whsec_`` + base64 of 24 to 64 random bytes."""
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX) or not 24 <= len(key) <= 64:
        raise InvalidInput(
            "a webhook secret is 'whsec_' followed by the base64 of 24 to 64 random bytes",
            "secret",
        )


def add_webhook_secret(
    session: Session, keyring: Keyring, tenant: Tenant, secret: str | None, source: str = "api"
) -> tuple[WebhookSecret, str]:
    """Store ``secret`` (or a generated one); return the row and the plaintext, shown once."""
    secret = secret or generate_webhook_secret()
    validate_webhook_secret(secret)
    fingerprint = keyring.hash_token(secret)
    duplicate = select(WebhookSecret.id).where(WebhookSecret.fingerprint == fingerprint)
    if session.scalar(duplicate) is not None:
        raise Conflict("this webhook secret is already active for the tenant", "secret")
    row = WebhookSecret(
        tenant_id=tenant.id,
        public_id=public_id("whk_"),
        secret_sealed=keyring.seal(secret, webhook_secret_context(tenant)),
        fingerprint=fingerprint,
        source=source,
    )
    session.add(row)
    return row, secret


def webhook_secrets(session: Session) -> list[WebhookSecret]:
    return list(session.scalars(select(WebhookSecret).order_by(WebhookSecret.created_at)))


def active_webhook_keys(session: Session, keyring: Keyring, tenant: Tenant) -> list[str]:
    """The plaintext secrets a signature may be made with (webhooks issue uses these)."""
    context = webhook_secret_context(tenant)
    return [keyring.open(row.secret_sealed, context) for row in webhook_secrets(session)]


def find_webhook_secret(session: Session, secret_id: str) -> WebhookSecret:
    statement = select(WebhookSecret).where(WebhookSecret.public_id == secret_id)
    return one_or_404(session, statement, f"webhook secret {secret_id!r}")


def add_scim_token(
    session: Session, keyring: Keyring, tenant: Tenant, token: str | None, source: str = "api"
) -> tuple[ScimToken, str]:
    token = token or generate_token(SCIM_TOKEN_PREFIX)
    if len(token) < MIN_TOKEN_LENGTH:
        raise InvalidInput(f"a SCIM token must be at least {MIN_TOKEN_LENGTH} characters", "token")
    token_hash = keyring.hash_token(token)
    # The unique index on token_hash also refuses a token another tenant already uses.
    if session.scalar(select(ScimToken.id).where(ScimToken.token_hash == token_hash)):
        raise Conflict("this SCIM token is already in use", "token")
    row = ScimToken(
        tenant_id=tenant.id, public_id=public_id("sct_"), token_hash=token_hash, source=source
    )
    session.add(row)
    return row, token


def scim_token_for(session: Session, keyring: Keyring, token: str) -> ScimToken | None:
    """The session tenant's SCIM token with this value; another tenant's token finds nothing."""
    token_hash = keyring.hash_token(token)
    return session.scalars(select(ScimToken).where(ScimToken.token_hash == token_hash)).first()


def scim_tokens(session: Session) -> list[ScimToken]:
    return list(session.scalars(select(ScimToken).order_by(ScimToken.created_at)))


def find_scim_token(session: Session, token_id: str) -> ScimToken:
    statement = select(ScimToken).where(ScimToken.public_id == token_id)
    return one_or_404(session, statement, f"SCIM token {token_id!r}")
