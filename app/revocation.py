"""Session revocation: "tokens of this user (or session) issued before T are refused".

The one hook every path that ends a user's access goes through: logout, back-channel logout,
SCIM deactivation and deletion, an operator block, a webhook delete. Token validation (userinfo
now, token exchange later) asks ``is_revoked`` on every token. Whatever else must be dropped
when a user's access ends (the user's cached upstream tokens, ``app.token_cache``) is dropped
inside ``revoke``, so no caller can forget it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app import tenancy, token_cache
from app.models import SessionRevocation, utcnow

ALL_SESSIONS = ""


def revoke(
    session: Session,
    subject: str,
    reason: str,
    session_id: str = ALL_SESSIONS,
    at: datetime | None = None,
) -> datetime:
    """Refuse the user's tokens (of one session, or all) issued up to ``at`` (default: now)."""
    at = at or utcnow()
    row = session.scalars(
        select(SessionRevocation).where(
            SessionRevocation.subject == subject, SessionRevocation.session_id == session_id
        )
    ).first()
    if row is None:
        session.add(
            SessionRevocation(subject=subject, session_id=session_id, not_before=at, reason=reason)
        )
    elif row.not_before < at:
        row.not_before, row.reason = at, reason
    session.flush()
    tenant_id = session.info.get(tenancy.TENANT_KEY)
    if tenant_id is not None:
        token_cache.purge_user_on(session, tenant_id, subject)
    return at


def is_revoked(session: Session, subject: str, session_id: str | None, issued_at: datetime) -> bool:
    """Whether a token of ``subject`` (and ``session_id``) issued at ``issued_at`` is refused."""
    sessions = [ALL_SESSIONS] + ([session_id] if session_id else [])
    not_before = session.scalars(
        select(SessionRevocation.not_before).where(
            SessionRevocation.subject == subject,
            or_(*(SessionRevocation.session_id == sid for sid in sessions)),
        )
    ).all()
    return any(issued_at <= cutoff for cutoff in not_before)
