"""Session revocation: "tokens of this user (or session) issued up to T are refused".

The one hook every path that ends a user's access goes through: logout, back-channel logout,
SCIM deactivation and deletion, an operator block, a webhook delete. Token validation (userinfo
and token exchange) asks ``is_revoked`` on every token. Whatever else must be dropped when a
user's access ends (the user's cached upstream tokens, ``app.token_cache``) is dropped inside
``revoke``, so no caller can forget it.

What a revocation records is a set of cutoffs, one per (subject, session id) row; a token is
refused when its ``iat`` is at most a cutoff of one of its rows plus ``LEEWAY`` (the leeway
token validation grants ``iat``, on the refusing side: an IdP clock ahead of ours never keeps
a token alive). The rows, and what each refuses:

- (subject, ``ALL_SESSIONS``): every token of the subject issued up to T (block, delete,
  deactivation, a logout that names no session).
- (subject, sid), from a logout of session ``sid`` at T: that session is over for good. Its
  cutoff is T + ``session_max_age`` (``IDBRIDGE_SESSION_MAX_AGE``), the longest the session can
  live: every token naming it is refused whatever its ``iat``, including those the IdP, not
  told, issues when it refreshes the session. ``ANY_SUBJECT`` stands for "whoever the user",
  for a back-channel logout that names only a ``sid``.
- (subject, ``NO_SESSION``), from the same logout: tokens of the subject that name no session
  (a certified OpenID provider issues access tokens without ``sid`` by default) issued up to
  T. Any of them may belong to the session just ended; idbridge cannot tell which.

Rows are swept (``expired``) once no token they refuse can still be valid: token validation
refuses access tokens that live longer than ``session_max_age``, so that is ``session_max_age``
plus twice the leeway after the cutoff.

The database row is the source of truth. Reads and the copy other instances see go through a
``NotBeforeStore`` (``app.shared``): ``DatabaseNotBefore`` reads the rows themselves;
``app.shared_redis.RedisNotBefore`` keeps a copy in Redis, written before the revocation
commits (if Redis cannot take it, the revocation fails with 503 and rolls back: never a false
success) and reloaded from the database whenever Redis has lost it. Both answer cutoffs; what
they mean is decided here, once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Delete, bindparam, delete, select
from sqlalchemy.orm import Session

from app import tenancy, token_cache
from app.models import SessionRevocation, utcnow
from app.tokens import LEEWAY

ALL_SESSIONS = ""
# Not a session id an IdP issues (``\x1f`` is a control character); a token whose ``sid`` were
# this value would meet the row as its session's: refused, never accepted (fails closed).
NO_SESSION = "\x1fnone"
# A revocation of a session known only by its ``sid`` (a back-channel logout token without
# ``sub``): recorded under this subject, which no real subject can be.
ANY_SUBJECT = "\x1fany"
SKEW = timedelta(seconds=LEEWAY)


def revoke(
    session: Session,
    subject: str,
    reason: str,
    session_id: str = ALL_SESSIONS,
    at: datetime | None = None,
) -> datetime:
    """Refuse the user's tokens issued up to ``at`` (default: now); with a ``session_id``, end
    that session for good and refuse the user's tokens that name no session up to ``at``."""
    at = at or utcnow()
    store = _store(session)
    if session_id == ALL_SESSIONS:
        cutoffs = [(ALL_SESSIONS, at)]
    else:
        cutoffs = [(session_id, at + store.session_max_age)]
        if subject != ANY_SUBJECT:
            cutoffs.append((NO_SESSION, at))
    tenant_id = session.info[tenancy.TENANT_KEY]
    for row_session, cutoff in cutoffs:
        _raise(session, subject, row_session, cutoff, reason)
        store.publish(session, tenant_id, subject, row_session, cutoff)
    token_cache.purge_user_on(session, tenant_id, subject)
    return at


def _raise(session: Session, subject: str, session_id: str, cutoff: datetime, reason: str) -> None:
    """Raise the row's cutoff to ``cutoff``; never lower it."""
    row = session.scalars(
        select(SessionRevocation).where(
            SessionRevocation.subject == subject, SessionRevocation.session_id == session_id
        )
    ).first()
    if row is None:
        session.add(
            SessionRevocation(
                subject=subject, session_id=session_id, not_before=cutoff, reason=reason
            )
        )
    elif row.not_before < cutoff:
        row.not_before, row.reason = cutoff, reason
    session.flush()


def is_revoked(session: Session, subject: str, session_id: str | None, issued_at: datetime) -> bool:
    """Whether a token of ``subject`` naming ``session_id`` (or none) issued at ``issued_at``
    is refused: one read of the store, whatever the rows (the hot path asks once)."""
    keys = [(subject, ALL_SESSIONS), (subject, session_id or NO_SESSION)]
    if session_id:
        keys.append((ANY_SUBJECT, session_id))
    cutoffs = _store(session).cutoffs(session, session.info[tenancy.TENANT_KEY], keys)
    return any(issued_at <= cutoff + SKEW for cutoff in cutoffs)


def kept_for(session_max_age: timedelta) -> timedelta:
    """How long after its cutoff a row can still refuse a valid token: a token refused has
    ``iat`` <= cutoff + leeway, lives at most ``session_max_age`` and is accepted up to the
    leeway past its ``exp``."""
    return session_max_age + 2 * SKEW


def expired(now: datetime, session_max_age: timedelta) -> Delete:
    """The rows no valid token can be refused by any more (``app.jobs.cleanup``)."""
    return delete(SessionRevocation).where(
        SessionRevocation.not_before < now - kept_for(session_max_age)
    )


class NotBeforeStore(Protocol):
    # ``IDBRIDGE_SESSION_MAX_AGE``: how long an ended session stays ended.
    session_max_age: timedelta

    def publish(
        self, session: Session, tenant_id: int, subject: str, session_id: str, at: datetime
    ) -> None:
        """Make the cutoff ``at`` (already written in ``session``) seen by every instance once
        ``session`` commits; ``StoreUnavailable`` when that cannot be promised."""
        ...

    def cutoffs(
        self, session: Session, tenant_id: int, keys: list[tuple[str, str]]
    ) -> list[datetime]:
        """The cutoffs recorded for any of the (subject, session) ``keys``."""
        ...


class DatabaseNotBefore:
    """Single-instance mode: the rows ``revoke`` wrote are all there is to read."""

    def __init__(self, session_max_age: timedelta) -> None:
        self.session_max_age = session_max_age

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
