"""The five user operations the platform's Users service calls (CONTRACT §1), as domain code.

Each runs inside the caller's transaction, scoped to the tenant (``app.idempotency.run``),
and raises ``app.errors`` exceptions; the webhook package renders them. Work that leaves
idbridge after the answer (mail, the IdP sending its own mail) goes to the outbox under the
webhook's id, so a retry cannot send twice. Calls that must succeed before anything changes
locally (deleting the user at the IdP, marking the address verified there) are made before
the commit: when the IdP fails, the transaction rolls back and nothing is deleted.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy.orm import Session

from app import connectors, email_tokens, outbox, revocation, users
from app.errors import Conflict, NotFound
from app.models import Tenant, User, utcnow
from app.runtime import Runtime


def find(session: Session, id: str | None, email: str | None, customer: str | None) -> User:
    """``get``: by the IdP's id, the canonical email, or the customer (exactly one given)."""
    if id is not None:
        return users.by_subject(session, id)
    if email is not None:
        return users.by_email(session, email)
    if customer is not None:
        return users.by_customer(session, customer)
    raise NotFound("user does not exist")


def delete(session: Session, rt: Runtime, tenant: Tenant, subject: str) -> None:
    """Delete at the IdP first (before the commit), then locally; every session ends at once.

    THREATS.md: "delete | the user's ... sessions are gone": ``revocation.revoke`` is the hook
    that also drops whatever else the user's access holds.
    """
    user = users.by_subject(session, subject)
    session.delete(user)
    revocation.revoke(session, subject, "deleted")
    session.flush()
    _connector(rt, tenant).delete_user(subject)


def mark_email_verified(session: Session, rt: Runtime, tenant: Tenant, subject: str) -> User:
    """Idempotent: an already verified address is left as it is (and the IdP is not called)."""
    user = users.by_subject(session, subject)
    return _mark_verified(session, rt, tenant, user)


def _mark_verified(session: Session, rt: Runtime, tenant: Tenant, user: User) -> User:
    if user.email_verified:
        return user
    user.email_verified = True
    user.version += 1
    user.updated_at = utcnow()
    session.flush()
    connector = _connector(rt, tenant)
    if connector.supports("mark_email_verified"):
        connector.mark_email_verified(user.subject)
    return user


def send_verification_email(
    session: Session, rt: Runtime, tenant: Tenant, subject: str, key: str
) -> None:
    """Queue the verification mail: the IdP's own where it sends one, else idbridge's link."""
    user = users.by_subject(session, subject)
    if not user.email:
        raise Conflict("the user has no email address")
    if user.email_verified:
        raise Conflict("the user's email address is already verified")
    if user.blocked:
        raise Conflict("the user is blocked")
    if _connector(rt, tenant).supports("send_verification_email"):
        outbox.enqueue_connector(session, rt, tenant, key, "send_verification_email", subject)
        return
    token = email_tokens.issue(session, rt.keyring, user, "verify_email")
    link = f"{rt.settings.public_url}/t/{tenant.slug}/verify-email?{urlencode({'token': token})}"
    hours = int(email_tokens.LIFETIMES["verify_email"].total_seconds() // 3600)
    outbox.enqueue_mail(session, rt, tenant, key, "verify_email", user.email, link, hours)


def send_password_reset_email(
    session: Session, rt: Runtime, tenant: Tenant, email: str, key: str
) -> None:
    """Answer the same whether or not the address is known (THREATS.md: no account oracle).

    The request path does the same lookups either way and only adds rows in this transaction;
    the IdP call or the SMTP send happens later, from the outbox. An unknown or blocked address,
    or a tenant with neither a reset-capable connector nor a ``password_reset_url``, queues
    nothing.
    """
    try:
        user: User | None = users.by_email(session, email)
    except NotFound:
        user = None
    connector = _connector(rt, tenant)
    if user is None or user.blocked or not user.email:
        return
    if connector.supports("send_password_reset_email"):
        outbox.enqueue_connector(
            session, rt, tenant, key, "send_password_reset_email", user.subject
        )
        return
    if not tenant.password_reset_url:
        return
    token = email_tokens.issue(session, rt.keyring, user, "password_reset")
    hours = int(email_tokens.LIFETIMES["password_reset"].total_seconds() // 3600)
    link = _with_token(tenant.password_reset_url, token)
    outbox.enqueue_mail(session, rt, tenant, key, "password_reset", user.email, link, hours)


def verify_email_link(session: Session, rt: Runtime, tenant: Tenant, token: str) -> User:
    """The landing page of a verification link: use the token once, mark the address verified
    (at the IdP too, where its connector can)."""
    user = email_tokens.consume(session, rt.keyring, token, "verify_email")
    return _mark_verified(session, rt, tenant, user)


def _with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = "&".join(part for part in (parts.query, urlencode({"token": token})) if part)
    return urlunsplit(parts._replace(query=query))


def _connector(rt: Runtime, tenant: Tenant) -> connectors.Connector:
    return connectors.for_tenant(tenant, rt.keyring, rt.settings.allow_private_urls)
