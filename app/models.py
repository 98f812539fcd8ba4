"""The store's tables (SQLAlchemy 2 declarative); Alembic migrations in ``app/migrations``.

Every row except a ``Tenant`` is ``TenantOwned``: it carries ``tenant_id`` and is reachable only
through a tenant-scoped session (``app.tenancy``). Rows that point at each other within a tenant
(a grant's client and integration) do so through composite foreign keys that include
``tenant_id``, so the database itself refuses a cross-tenant link.

Secrets: ``*_hash`` columns hold keyed hashes of tokens idbridge only compares; ``*_sealed``
columns hold AES-GCM ciphertexts of secrets it must use (``app.crypto``). Neither is ever
serialised in full by the admin API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TenantOwned:
    """Marks a row that belongs to exactly one tenant; ``app.tenancy`` scopes every query."""

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)


class Tenant(Timestamps, Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    # users: how SCIM users and tokens become the User of CONTRACT §1
    user_id_attribute: Mapped[str] = mapped_column(String(200), default="externalId")
    customer_attribute: Mapped[str] = mapped_column(
        String(300),
        default="urn:ietf:params:scim:schemas:extension:idbridge:2.0:User:customer",
    )
    customer_required: Mapped[bool] = mapped_column(Boolean, default=True)
    customer_claim: Mapped[str] = mapped_column(String(100), default="customer")
    # mail and OIDC logout
    mail_from: Mapped[str] = mapped_column(String(320), default="")
    password_reset_url: Mapped[str] = mapped_column(String(2000), default="")
    logout_redirect_uris: Mapped[list[str]] = mapped_column(default=list)

    identity_provider: Mapped[IdentityProvider | None] = relationship(
        back_populates="tenant",
        cascade="all, delete-orphan",
        passive_deletes=True,
        uselist=False,
    )


class IdentityProvider(TenantOwned, Timestamps, Base):
    """The tenant's trusted issuer and the connector that acts on its users (DOMAIN.md)."""

    __tablename__ = "identity_providers"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer: Mapped[str] = mapped_column(String(2000), default="")
    jwks_uri: Mapped[str] = mapped_column(String(2000), default="")
    audiences: Mapped[list[str]] = mapped_column(default=list)
    algorithms: Mapped[list[str]] = mapped_column(default=lambda: ["RS256"])
    subject_claim: Mapped[str] = mapped_column(String(100), default="sub")
    connector: Mapped[str] = mapped_column(String(20), default="none")
    connector_settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    connector_secret_sealed: Mapped[str | None] = mapped_column(Text)

    tenant: Mapped[Tenant] = relationship(back_populates="identity_provider")


class WebhookSecret(TenantOwned, Base):
    """A ``whsec_`` key the Users service signs with; several are active during rotation."""

    __tablename__ = "webhook_secrets"
    __table_args__ = (UniqueConstraint("tenant_id", "fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    secret_sealed: Mapped[str] = mapped_column(Text)
    # keyed hash of the secret: finds duplicates and lets `apply` compare without decrypting
    fingerprint: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(200), default="api")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScimToken(TenantOwned, Base):
    """A bearer token an identity provider pushes SCIM with, stored as a keyed hash only."""

    __tablename__ = "scim_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(200), default="api")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()


class Client(TenantOwned, Timestamps, Base):
    """An OAuth client of the token endpoint (the data broker, ...)."""

    __tablename__ = "clients"
    __table_args__ = (
        UniqueConstraint("tenant_id", "client_id"),
        UniqueConstraint("tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(500), default="")
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    secret_source: Mapped[str] = mapped_column(String(200), default="")
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    audiences: Mapped[list[str]] = mapped_column(default=list)
    scopes: Mapped[list[str]] = mapped_column(default=list)
    may_impersonate: Mapped[bool] = mapped_column(Boolean, default=False)
    may_delegate: Mapped[bool] = mapped_column(Boolean, default=False)


class Integration(TenantOwned, Timestamps, Base):
    """An upstream system the broker reaches for users (Snowflake, Salesforce, RFC 8693, ...)."""

    __tablename__ = "integrations"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        UniqueConstraint("tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    flow: Mapped[str | None] = mapped_column(String(20))
    audience: Mapped[str] = mapped_column(String(2000), default="")
    resource: Mapped[str] = mapped_column(String(2000), default="")
    token_endpoint: Mapped[str] = mapped_column(String(2000), default="")
    client_id: Mapped[str] = mapped_column(String(200), default="")
    client_secret_sealed: Mapped[str | None] = mapped_column(Text)
    client_secret_source: Mapped[str] = mapped_column(String(200), default="")
    user_mapping: Mapped[dict[str, Any]] = mapped_column(
        default=lambda: {"source": "mapping_table"}
    )
    scope_mapping: Mapped[dict[str, Any]] = mapped_column(default=dict)
    token_lifetime: Mapped[int] = mapped_column(Integer, default=600)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Grant(TenantOwned, Base):
    """Client X may exchange tokens for integration Y; revocation keeps the row for the record."""

    __tablename__ = "grants"
    __table_args__ = (
        UniqueConstraint("tenant_id", "client_pk", "integration_pk"),
        ForeignKeyConstraint(
            ["tenant_id", "client_pk"], ["clients.tenant_id", "clients.id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["tenant_id", "integration_pk"],
            ["integrations.tenant_id", "integrations.id"],
            ondelete="CASCADE",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_pk: Mapped[int] = mapped_column(Integer, index=True)
    integration_pk: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()

    client: Mapped[Client] = relationship(
        foreign_keys=[client_pk], primaryjoin="Grant.client_pk == Client.id", viewonly=True
    )
    integration: Mapped[Integration] = relationship(
        foreign_keys=[integration_pk],
        primaryjoin="Grant.integration_pk == Integration.id",
        viewonly=True,
    )


class User(TenantOwned, Timestamps, Base):
    """A person as the identity provider knows them: the User of CONTRACT §1.

    ``subject`` is the User ``id`` (the IdP's id, what its tokens carry); ``scim_id`` is the id
    idbridge assigned as a SCIM service provider. ``email`` is kept exactly as given (mail goes
    there); lookups use ``email_canonical`` (``app.users.canonical_email``). ``version`` feeds
    SCIM ETags. ``scim`` holds the SCIM attributes as stored (never ``id``, ``meta`` or a
    password).
    """

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "subject"),
        UniqueConstraint("tenant_id", "scim_id"),
        UniqueConstraint("tenant_id", "user_name_canonical"),
        UniqueConstraint("tenant_id", "customer"),
        UniqueConstraint("tenant_id", "email_canonical"),
        UniqueConstraint("tenant_id", "id"),
        Index("ix_users_tenant_id_external_id", "tenant_id", "external_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scim_id: Mapped[str] = mapped_column(String(36))
    subject: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255))
    user_name: Mapped[str] = mapped_column(String(255))
    user_name_canonical: Mapped[str] = mapped_column(String(255))
    customer: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    email_canonical: Mapped[str | None] = mapped_column(String(320))
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    operator_blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    logins_count: Mapped[int] = mapped_column(BigInteger, default=0)
    login_time: Mapped[datetime | None] = mapped_column()
    version: Mapped[int] = mapped_column(Integer, default=1)
    scim: Mapped[dict[str, Any]] = mapped_column(default=dict)

    @property
    def blocked(self) -> bool:
        """CONTRACT §1: deactivated by the identity provider or blocked by an operator."""
        return not self.active or self.operator_blocked


class SessionRevocation(TenantOwned, Base):
    """Tokens of a user (``session_id`` empty), of one session, or of the user naming no session
    (``app.revocation.NO_SESSION``) issued up to ``not_before`` (plus the leeway) are refused
    (DOMAIN.md: Session revocation); an ended session's cutoff is its logout plus
    ``IDBRIDGE_SESSION_MAX_AGE``. Written by logout, block and delete (``app.revocation``)."""

    __tablename__ = "session_revocations"
    __table_args__ = (UniqueConstraint("tenant_id", "subject", "session_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(255))
    session_id: Mapped[str] = mapped_column(String(255), default="")
    not_before: Mapped[datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(String(50), default="")


class UserSession(TenantOwned, Base):
    """A login session of a user, first seen in a validated token (CONTRACT §1: a login is
    counted when a token shows a session not seen before). ``session_key`` is ``sid:<sid>``,
    else ``auth_time:<epoch>``; the unique constraint makes concurrent first uses count once.
    ``session_id`` (the ``sid``) lets a back-channel logout that names only a ``sid`` find
    its user."""

    __tablename__ = "user_sessions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "subject", "session_key"),
        Index("ix_user_sessions_tenant_id_session_id", "tenant_id", "session_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(255))
    session_key: Mapped[str] = mapped_column(String(300))
    session_id: Mapped[str] = mapped_column(String(255), default="")
    session_time: Mapped[datetime] = mapped_column()
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class LogoutTokenUse(TenantOwned, Base):
    """The ``jti`` of a back-channel logout token already processed, kept until the token
    expires so a replay is refused (Back-Channel Logout 1.0 §2.6 step 8)."""

    __tablename__ = "logout_token_uses"
    __table_args__ = (UniqueConstraint("tenant_id", "jti"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    jti: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class WebhookDelivery(TenantOwned, Base):
    """A processed ``webhook-id`` and the response it got (DOMAIN.md: IdempotencyRecord).

    The row is inserted first, in the operation's own transaction, so the unique constraint
    makes a concurrent second delivery of the same id wait and then fail to insert instead of
    running the operation twice. Kept 24 hours (CONTRACT §1). ``fingerprint`` names the one
    message the id stands for: a keyed hash of the operation and the exact raw body (never the
    body itself); NULL on rows written before it existed (``app.idempotency``).
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("tenant_id", "webhook_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(255))
    operation: Mapped[str] = mapped_column(String(40))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class OutboxMessage(TenantOwned, Base):
    """Work that leaves idbridge after the request: a mail, or a call to the identity provider's
    connector (DOMAIN.md: OutboxMessage). Durable, retried with backoff, at most one per
    ``idempotency_key``. ``payload_sealed`` holds the message (it may carry a single-use link),
    sealed like every other secret."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_outbox_messages_state_next_attempt_at", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(40))
    payload_sealed: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()


class EmailToken(TenantOwned, Base):
    """A single-use link token (email verification or password reset), kept as a keyed hash.

    Typed by ``purpose`` and bound to the user and to the address it was sent to: an email
    change makes it useless (THREATS.md, Webhooks)."""

    __tablename__ = "email_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(255))
    email_canonical: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()


class Group(TenantOwned, Timestamps, Base):
    """A SCIM group (RFC 7643 §4.2): ``displayName`` unique per tenant, case-insensitively.

    ``scim_id`` is the id idbridge assigned; ``scim`` keeps the attributes as stored (never
    ``id``, ``meta`` or ``members``, which live in ``GroupMember`` rows); ``version`` feeds
    ETags.
    """

    __tablename__ = "groups"
    __table_args__ = (
        UniqueConstraint("tenant_id", "scim_id"),
        UniqueConstraint("tenant_id", "display_name_canonical"),
        UniqueConstraint("tenant_id", "id"),
        Index("ix_groups_tenant_id_external_id", "tenant_id", "external_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scim_id: Mapped[str] = mapped_column(String(36))
    external_id: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(255))
    display_name_canonical: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer, default=1)
    scim: Mapped[dict[str, Any]] = mapped_column(default=dict)


class GroupMember(TenantOwned, Base):
    """A user in a group; both of the same tenant (composite foreign keys refuse otherwise)."""

    __tablename__ = "group_members"
    __table_args__ = (
        UniqueConstraint("tenant_id", "group_pk", "user_pk"),
        ForeignKeyConstraint(
            ["tenant_id", "group_pk"], ["groups.tenant_id", "groups.id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["tenant_id", "user_pk"], ["users.tenant_id", "users.id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_pk: Mapped[int] = mapped_column(Integer, index=True)
    user_pk: Mapped[int] = mapped_column(Integer, index=True)
    display: Mapped[str | None] = mapped_column(String(255))  # as the IdP sent it


class SigningKey(TenantOwned, Base):
    """A tenant's key for the tokens idbridge issues (DOMAIN.md: SigningKey).

    The private key is sealed (``app.crypto``, bound to the tenant and ``kid``). A key is
    published in the tenant's JWKS from ``created_at``, signs from ``activates_at`` (later than
    ``created_at`` after a rotation, so verifiers see it before any token it signed), and stays
    published until ``retires_at``, when every token it signed has expired.
    """

    __tablename__ = "signing_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "kid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64))
    algorithm: Mapped[str] = mapped_column(String(10))
    private_sealed: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activates_at: Mapped[datetime] = mapped_column()
    retires_at: Mapped[datetime | None] = mapped_column()


class UpstreamMapping(TenantOwned, Timestamps, Base):
    """(user, integration) -> upstream subject (DOMAIN.md: Mapping); absence is
    ``user_not_provisioned`` when the integration maps from the table."""

    __tablename__ = "upstream_mappings"
    __table_args__ = (
        UniqueConstraint("tenant_id", "integration_pk", "subject"),
        ForeignKeyConstraint(
            ["tenant_id", "integration_pk"],
            ["integrations.tenant_id", "integrations.id"],
            ondelete="CASCADE",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    integration_pk: Mapped[int] = mapped_column(Integer, index=True)
    subject: Mapped[str] = mapped_column(String(255))
    upstream_subject: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(20), default="api")


class AuditEvent(TenantOwned, Base):
    """One decision of the token endpoint or the mapping query (DOMAIN.md: AuditEvent).

    Append-only: nothing updates or deletes a row. Never holds a token or a secret.
    """

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_tenant_id_at", "tenant_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(40))
    client_id: Mapped[str] = mapped_column(String(200), default="")
    actors: Mapped[list[str]] = mapped_column(default=list)
    subject: Mapped[str] = mapped_column(String(255), default="")
    integration: Mapped[str] = mapped_column(String(100), default="")
    audience: Mapped[str] = mapped_column(String(2000), default="")
    scope: Mapped[str] = mapped_column(String(2000), default="")
    outcome: Mapped[str] = mapped_column(String(20))
    error_code: Mapped[str] = mapped_column(String(50), default="")
    reason: Mapped[str] = mapped_column(String(500), default="")
    request_id: Mapped[str] = mapped_column(String(100), default="")


class ClientAssertionUse(TenantOwned, Base):
    """The ``jti`` of a ``private_key_jwt`` client assertion already used, kept until the
    assertion expires so a replay is refused (RFC 7523 §3 item 7)."""

    __tablename__ = "client_assertion_uses"
    __table_args__ = (UniqueConstraint("tenant_id", "client_id", "jti"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(200))
    jti: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class IssuedTokenRevocation(TenantOwned, Base):
    """A token idbridge issued and a client revoked (RFC 7009), by ``jti``, kept until the
    token expires; introspection (RFC 7662) answers ``active: false`` for it."""

    __tablename__ = "issued_token_revocations"
    __table_args__ = (UniqueConstraint("tenant_id", "jti"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    jti: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class CachedToken(TenantOwned, Base):
    """An upstream token in the cache (``app.token_cache_db``), or a single flight's claim on
    a key while its holder calls the upstream (``sealed`` empty, ``lease_*`` set).

    Every worker and instance reads the same rows, so a purge (a DELETE in the revoking
    transaction) is seen by all as it commits. Names are keyed hashes (``app.token_cache``):
    the entry's key, and the user, grant and token that purges find it by; the value is
    sealed, bound to ``key_hash``. Times are epoch seconds, compared on the hot path as read.
    """

    __tablename__ = "token_cache"
    __table_args__ = (
        UniqueConstraint("tenant_id", "key_hash"),
        Index("ix_token_cache_tenant_id_user_hash", "tenant_id", "user_hash"),
        Index("ix_token_cache_tenant_id_grant_hash", "tenant_id", "grant_hash"),
        Index("ix_token_cache_tenant_id_token_hash", "tenant_id", "token_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    user_hash: Mapped[str] = mapped_column(String(64))
    grant_hash: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), default="")
    sealed: Mapped[str | None] = mapped_column(Text)
    good_until: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    lease_owner: Mapped[str] = mapped_column(String(64), default="")
    lease_until: Mapped[float] = mapped_column(Float, default=0.0)


class JobLease(Base):
    """Which instance runs a scheduled job (``app.jobs``) and until when: the lease that makes
    a job run once across instances and lets another instance take over from a dead holder."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column()
