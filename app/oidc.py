"""The OIDC side (CONTRACT §2): userinfo, logout, back-channel logout, and logins.

Every function takes an open transaction, the tenant's slug, and the app's ``TokenValidator``;
none touches ``flask.request``. Errors are ``app.errors`` / ``app.tokens`` exceptions the
``oauth`` package renders in its protocol (RFC 6750 at userinfo and API logout, an HTML page
at RP-initiated logout, ``{"error": "invalid_request"}`` at back-channel logout).

Every logout, whatever its door, goes through ``end_session`` (the one function to extend with
what else must happen when a session ends; it also tells the IdP's connector), which writes
the revocation through ``app.revocation.revoke`` before the caller answers, from then on
refused on every instance (the revocation lives in the shared database). A logout that names
a session (``sid``) ends it for good (every token naming it, whatever its ``iat``, for
``IDBRIDGE_SESSION_MAX_AGE``) and the user's tokens that name no session issued up to the
logout; one that names none, every token of the user issued up to it. "Up to the logout" is
the later of idbridge's clock and the ``iat`` of the token that asked for it (access token,
ID token hint, logout token), so an IdP clock ahead of ours never keeps a token alive.

Logins (CONTRACT §1): the first validated token that shows a session not seen before (``sid``,
else ``auth_time``) counts one login, in the same transaction, and sets ``login_time`` to that
session's time (``auth_time``, else ``iat``). Seen sessions are rows of ``UserSession`` under a
unique constraint: concurrent first uses of one session insert once and count once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app import connectors, outbox, replay, revocation, tenancy, tenants, users
from app.database import Database
from app.errors import InvalidInput, NotFound
from app.models import Tenant, User, UserSession, utcnow
from app.runtime import Runtime
from app.tokens import (
    LEEWAY,
    LOGOUT_TOKEN_MAX_AGE,
    InvalidToken,
    TokenValidator,
    TrustedIssuer,
    VerifiedToken,
)


@dataclass(frozen=True)
class Authenticated:
    """The outcome of ``authenticate``: the tenant, its user, and the token that proved it."""

    tenant: Tenant
    user: User
    token: VerifiedToken


def find_tenant(session: Session, slug: str) -> tuple[Tenant, TrustedIssuer]:
    """The tenant (scoping ``session`` to it) and its trusted issuer."""
    tenant = tenants.find(session, slug)
    return tenant, TrustedIssuer.of(tenant.identity_provider)


def is_session_revoked(session: Session, token: VerifiedToken) -> bool:
    """``app.revocation.is_revoked`` for a validated token (userinfo, logout, exchange)."""
    return revocation.is_revoked(session, token.subject, token.session_id, token.issued_at)


def authenticate(
    session: Session, validator: TokenValidator, slug: str, access_token: str
) -> Authenticated:
    """A bearer access token of ``slug``'s identity provider -> its known, unblocked user.

    Refused (``InvalidToken``): anything ``TokenValidator.access_token`` refuses, a revoked
    session, an unknown or blocked user. Reads only: ``is_new_session`` says whether the
    login is still to be counted (``count_login``).
    """
    tenant, issuer = find_tenant(session, slug)
    token = validator.access_token(issuer, access_token)
    if is_session_revoked(session, token):
        raise InvalidToken("the session of this token has ended")
    try:
        user = users.by_subject(session, token.subject)
    except NotFound:
        raise InvalidToken("the token's user is unknown") from None
    if user.blocked:
        raise InvalidToken("the token's user is blocked")
    return Authenticated(tenant, user, token)


_SEEN = select(UserSession.id).where(
    UserSession.subject == bindparam("subject"), UserSession.session_key == bindparam("key")
)


def is_new_session(session: Session, user: User, token: VerifiedToken) -> bool:
    """Whether ``token`` shows a session of ``user`` that ``count_login`` has not counted."""
    key = token.session_key
    if key is None:
        return False
    return session.scalar(_SEEN, {"subject": user.subject, "key": key}) is None


def count_login(session: Session, user: User, token: VerifiedToken) -> bool:
    """Count a login when ``token`` shows a session of ``user`` not seen before (CONTRACT §1).

    ``INSERT ... ON CONFLICT DO NOTHING`` on the unique (tenant, subject, session key): of two
    concurrent first uses, one inserts and counts; the other finds the row and does not.
    Returns whether this call counted.
    """
    key = token.session_key
    if key is None:
        return False
    values = {
        "tenant_id": user.tenant_id,
        "subject": user.subject,
        "session_key": key,
        "session_id": token.session_id or "",
        "session_time": token.session_time,
        "first_seen_at": utcnow(),
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(UserSession)
        .values(values)
        .on_conflict_do_nothing()
        .returning(UserSession.id)
    )
    if session.execute(statement).scalar_one_or_none() is None:
        return False
    when = token.session_time
    latest = func.coalesce(User.login_time, when)
    session.execute(
        update(User)
        .where(User.id == user.id)
        .values(
            logins_count=User.logins_count + 1,
            login_time=_later(latest, when),
        )
        .execution_options(synchronize_session=False)
    )
    session.refresh(user)
    return True


def _later(column: Any, when: datetime) -> Any:
    """SQL for the later of ``column`` and ``when`` (``login_time`` never goes backwards)."""
    return case((column > when, column), else_=when)


def userinfo(
    db: Database, validator: TokenValidator, slug: str, access_token: str
) -> dict[str, Any]:
    """OpenID Connect Core §5.3: the claims of the token's user, from what idbridge stores.

    A read transaction answers; a write transaction follows only for a session not seen
    before, to count the login (``count_login`` is safe against a concurrent first use).
    """
    with db.read() as session:
        found = authenticate(session, validator, slug, access_token)
        claims = user_claims(found.tenant, found.user)
        new_session = is_new_session(session, found.user, found.token)
    if new_session:
        with db.transaction() as session:
            tenancy.scope_id(session, found.tenant.id)
            count_login(session, users.by_subject(session, found.user.subject), found.token)
    return claims


def user_claims(tenant: Tenant, user: User) -> dict[str, Any]:
    """OIDC standard claims (Core §5.1) of a User; profile claims from its SCIM attributes.

    ``sub`` is the User id; the tenant's ``customer_claim`` carries the customer; unknown
    values are omitted, never null.
    """
    scim = user.scim or {}
    name = scim.get("name") if isinstance(scim.get("name"), dict) else {}
    claims: dict[str, Any] = {
        "sub": user.subject,
        "tenant": tenant.slug,
        "email": user.email,
        "email_verified": bool(user.email_verified) if user.email else None,
        tenant.customer_claim or "customer": user.customer,
        "name": name.get("formatted") or scim.get("displayName"),
        "given_name": name.get("givenName"),
        "family_name": name.get("familyName"),
        "middle_name": name.get("middleName"),
        "nickname": scim.get("nickName"),
        "preferred_username": user.user_name,
        "profile": scim.get("profileUrl"),
        "locale": scim.get("locale") or scim.get("preferredLanguage"),
        "zoneinfo": scim.get("timezone"),
        "updated_at": int(user.updated_at.timestamp()) if user.updated_at else None,
    }
    phone = _primary(scim.get("phoneNumbers"))
    if phone:
        claims["phone_number"] = phone
    # the fixed claims win over a customer claim named like one of them
    claims["sub"], claims["tenant"] = user.subject, tenant.slug
    return {
        name: value
        for name, value in claims.items()
        if value is not None and (not isinstance(value, str) or value)
    }


def _primary(values: Any) -> str | None:
    """The ``value`` of the primary entry of a SCIM multi-valued attribute, else the first."""
    if not isinstance(values, list):
        return None
    entries = [entry for entry in values if isinstance(entry, dict) and entry.get("value")]
    primary = [entry for entry in entries if entry.get("primary") is True]
    chosen = (primary or entries or [None])[0]
    return str(chosen["value"]) if chosen else None


# --- logout -------------------------------------------------------------------------------


def end_session(
    session: Session,
    tenant: Tenant,
    subject: str,
    session_id: str | None,
    reason: str,
    shown: VerifiedToken,
    tell_idp: Runtime | None = None,
) -> datetime:
    """End one session of a user (``session_id``) or all of them (``None``): the one hook.

    Every logout path calls this, before it answers, with the token that asked for the logout
    (``shown``): what is refused is what ``app.revocation.revoke`` says, up to the later of now
    and that token's ``iat``. With ``tell_idp`` (a logout idbridge heard first, not one the IdP
    sent), the IdP's connector is asked, through the durable outbox, to end the user's sessions
    there too, where it supports that.
    """
    if not subject and not session_id:
        raise ValueError("a session to end needs a subject, a session id, or both")
    ended = revocation.revoke(
        session,
        subject or revocation.ANY_SUBJECT,
        reason,
        session_id=session_id or revocation.ALL_SESSIONS,
        at=max(utcnow(), shown.issued_at),
    )
    if tell_idp is not None and subject:
        rt = tell_idp
        connector = connectors.for_tenant(tenant, rt.keyring, rt.settings.allow_private_urls)
        if connector.supports("end_sessions"):
            key = f"end-sessions:{subject}:{ended.isoformat()}"
            outbox.enqueue_connector(session, rt, tenant, key, "end_sessions", subject)
    return ended


def api_logout(
    session: Session, rt: Runtime, validator: TokenValidator, slug: str, access_token: str
) -> None:
    """``POST /oidc/logout`` with the user's bearer token: end the token's session (``sid``),
    or every session of the user when the token names none."""
    tenant, issuer = find_tenant(session, slug)
    token = validator.access_token(issuer, access_token)
    if is_session_revoked(session, token):
        raise InvalidToken("the session of this token has ended")
    end_session(session, tenant, token.subject, token.session_id, "logout", token, tell_idp=rt)


def rp_logout(
    session: Session,
    rt: Runtime,
    validator: TokenValidator,
    slug: str,
    id_token_hint: str | None,
    post_logout_redirect_uri: str | None,
) -> str | None:
    """RP-Initiated Logout 1.0 §2-3: end the session the ``id_token_hint`` names; return the
    redirect URI (exactly one of the tenant's ``logout_redirect_uris``) or ``None``.

    Refused before anything is written (``InvalidInput``): a redirect URI not on the list, a
    missing hint, a hint that is not an ID token of the tenant's issuer (expired is fine).
    """
    tenant, issuer = find_tenant(session, slug)
    if post_logout_redirect_uri and post_logout_redirect_uri not in (
        tenant.logout_redirect_uris or []
    ):
        raise InvalidInput("the post_logout_redirect_uri is not registered for this tenant")
    if not id_token_hint:
        raise InvalidInput("an id_token_hint is required to know which session to end")
    try:
        hint = validator.id_token_hint(issuer, id_token_hint)
    except InvalidToken as exc:
        raise InvalidInput(f"the id_token_hint is not valid: {exc.message}") from None
    end_session(session, tenant, hint.subject, hint.session_id, "logout", hint, tell_idp=rt)
    return post_logout_redirect_uri or None


def backchannel_audiences(tenant: Tenant) -> list[str]:
    """Who a logout token may be addressed to: the tenant's audiences, and the client id the
    IdP knows idbridge by (``connector_settings.client_id``), if configured."""
    provider = tenant.identity_provider
    audiences = list(provider.audiences or []) if provider else []
    client_id = (provider.connector_settings or {}).get("client_id") if provider else None
    if isinstance(client_id, str) and client_id:
        audiences.append(client_id)
    return audiences


def backchannel_logout(
    session: Session, validator: TokenValidator, slug: str, logout_token: str
) -> None:
    """Back-Channel Logout 1.0 §2.5-2.8: validate the logout token (§2.6), refuse a replayed
    ``jti`` (kept until the token expires), and end the session(s) it names."""
    tenant, issuer = find_tenant(session, slug)
    token = validator.logout_token(issuer, logout_token, backchannel_audiences(tenant))
    jti = str(token.claims["jti"])[:255]
    expires = token.expires_at or token.issued_at + timedelta(seconds=LOGOUT_TOKEN_MAX_AGE)
    use = replay.Use(replay.Kind.LOGOUT_TOKEN, tenant.id, jti, expires + timedelta(seconds=LEEWAY))
    if not replay.first_use(session, use):
        raise InvalidToken("this logout token was already used")
    for subject in _subjects(session, token):
        end_session(session, tenant, subject, token.session_id, "backchannel-logout", token)


def _subjects(session: Session, token: VerifiedToken) -> Collection[str]:
    """The users a logout token ends sessions of: its ``sub``, or, with only a ``sid``, the
    users seen with that ``sid`` (at userinfo) plus ``ANY_SUBJECT`` (for tokens of it not seen
    yet). A user never seen with that ``sid`` keeps their tokens that name no session: which
    user they belong to is not known."""
    if token.subject:
        return [token.subject]
    seen = session.scalars(
        select(UserSession.subject).where(UserSession.session_id == token.session_id).distinct()
    ).all()
    return [*seen, revocation.ANY_SUBJECT]
