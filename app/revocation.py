"""Session revocation: "tokens of this user (or session) issued before T are refused".

The one hook every path that ends a user's access goes through: logout, back-channel logout,
SCIM deactivation and deletion, an operator block, a webhook delete. Token validation (userinfo
now, token exchange later) asks ``is_revoked`` on every token. Whatever else must be dropped
when a user's access ends (the user's cached upstream tokens, ``app.token_cache``) is dropped
inside ``revoke``, so no caller can forget it.

The database row is the source of truth. Reads and the copy other instances see go through a
``NotBeforeStore`` (``app.shared``): ``DatabaseNotBefore`` reads the rows themselves;
``app.shared_redis.RedisNotBefore`` keeps a copy in Redis, written before the revocation
commits (if Redis cannot take it, the revocation fails with 503 and rolls back: never a false
success) and reloaded from the database whenever Redis has lost it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy import bindparam, select
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
    tenant_id = session.info[tenancy.TENANT_KEY]
    _store(session).publish(session, tenant_id, subject, session_id, at)
    token_cache.purge_user_on(session, tenant_id, subject)
    return at


def is_revoked(session: Session, subject: str, session_id: str | None, issued_at: datetime) -> bool:
    """Whether a token of ``subject`` (and ``session_id``) issued at ``issued_at`` is refused."""
    return any_revoked(session, keys_of(subject, session_id), issued_at)


def keys_of(subject: str, session_id: str | None) -> list[tuple[str, str]]:
    """The (subject, session) rows that can refuse a token of ``subject`` and ``session_id``."""
    return [(subject, ALL_SESSIONS)] + ([(subject, session_id)] if session_id else [])


def any_revoked(session: Session, keys: list[tuple[str, str]], issued_at: datetime) -> bool:
    """Whether any of the (subject, session) rows ``keys`` refuses a token issued at
    ``issued_at``: one read of the store, however many keys (the hot path asks once)."""
    cutoffs = _store(session).cutoffs(session, session.info[tenancy.TENANT_KEY], keys)
    return any(issued_at <= cutoff for cutoff in cutoffs)


class NotBeforeStore(Protocol):
    def publish(
        self, session: Session, tenant_id: int, subject: str, session_id: str, at: datetime
    ) -> None:
        """Make the "not before" ``at`` (already written in ``session``) seen by every
        instance once ``session`` commits; ``StoreUnavailable`` when that cannot be promised."""
        ...

    def cutoffs(
        self, session: Session, tenant_id: int, keys: list[tuple[str, str]]
    ) -> list[datetime]:
        """The "not before" times recorded for any of the (subject, session) ``keys``."""
        ...


class DatabaseNotBefore:
    """Single-instance mode: the rows ``revoke`` wrote are all there is to read."""

    def publish(
        self, session: Session, tenant_id: int, subject: str, session_id: str, at: datetime
    ) -> None:
        return None

    def cutoffs(
        self, session: Session, tenant_id: int, keys: list[tuple[str, str]]
    ) -> list[datetime]:
        rows = session.execute(
            _CUTOFFS,
            {
                "subjects": sorted({subject for subject, _ in keys}),
                "session_ids": sorted({session_id for _, session_id in keys}),
            },
        )
        wanted = set(keys)
        return [not_before for subject, sid, not_before in rows if (subject, sid) in wanted]


# Built once: constructing a statement per call costs more than running it (bench/). The
# tenant guard adds the session's tenant to it (``app.tenancy``), as to every ORM statement.
_CUTOFFS = select(
    SessionRevocation.subject, SessionRevocation.session_id, SessionRevocation.not_before
).where(
    SessionRevocation.subject.in_(bindparam("subjects", expanding=True)),
    SessionRevocation.session_id.in_(bindparam("session_ids", expanding=True)),
)


def _store(session: Session) -> NotBeforeStore:
    from app import shared

    return shared.of_session(session).not_before
