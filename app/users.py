"""Users of a tenant: lookups by the User ``id``, canonical email and customer (CONTRACT §1).

Email lookups use one canonical form, Unicode NFKC then case folding (``canonical_email``), so
``Ada@Example.COM`` and ``ada@example.com`` find the same user and two such addresses can
never belong to two users; mail still goes to the address exactly as stored.
"""

from __future__ import annotations

import unicodedata

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app import revocation
from app.errors import NotFound
from app.models import User
from app.records import one_or_404


def canonical_email(address: str) -> str:
    """NFKC normalisation then Unicode case folding, surrounding white space removed."""
    return unicodedata.normalize("NFKC", address.strip()).casefold()


def canonical_user_name(user_name: str) -> str:
    """SCIM userName is case-insensitive (RFC 7643 §4.1.1): the same fold as emails."""
    return unicodedata.normalize("NFKC", user_name).casefold()


# Built once, bound per call: building a statement costs more than running it (bench/).
_BY_SUBJECT = select(User).where(User.subject == bindparam("subject"))


def by_subject(session: Session, subject: str) -> User:
    user = session.scalars(_BY_SUBJECT, {"subject": subject}).first()
    if user is None:
        raise NotFound("user does not exist")
    return user


def by_email(session: Session, address: str) -> User:
    statement = select(User).where(User.email_canonical == canonical_email(address))
    return one_or_404(session, statement, "user")


def by_customer(session: Session, customer: str) -> User:
    return one_or_404(session, select(User).where(User.customer == customer), "user")


def set_operator_block(session: Session, user: User, blocked: bool) -> bool:
    """Block or unblock ``user`` as an operator; return whether it changed.

    Blocking ends every session of the user at once (``app.revocation``, the one hook), so
    tokens issued before it stay refused even after an unblock; unblocking lets new ones in.
    """
    if user.operator_blocked == blocked:
        return False
    user.operator_blocked = blocked
    user.version += 1
    if blocked:
        revocation.revoke(session, user.subject, "blocked")
    return True
