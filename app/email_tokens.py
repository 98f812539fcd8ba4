"""Single-use link tokens sent by mail: email verification and password reset.

A token is 256 random bits, shown only in the mail; the store keeps its keyed hash
(``Keyring.hash_token``). Each is typed (``purpose``), expires, is used at most once, and is
bound to the user and to the address it was sent to, so a link mailed before an email change
verifies nothing afterwards (THREATS.md, Webhooks; OWASP ASVS V6 "out of band verifiers").
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.crypto import Keyring, generate_token
from app.errors import InvalidInput
from app.models import EmailToken, User, utcnow
from app.users import canonical_email

Purpose = Literal["verify_email", "password_reset"]
LIFETIMES: dict[str, timedelta] = {
    "verify_email": timedelta(hours=24),
    "password_reset": timedelta(hours=1),
}
REFUSED = "this link is not valid: it was already used, has expired, or was replaced"


def issue(session: Session, keyring: Keyring, user: User, purpose: Purpose) -> str:
    """A new token for ``user``'s current address; the plaintext is returned once."""
    if not user.email:
        raise InvalidInput("the user has no email address")
    token = generate_token("")
    session.add(
        EmailToken(
            token_hash=keyring.hash_token(token),
            purpose=purpose,
            subject=user.subject,
            email_canonical=canonical_email(user.email),
            expires_at=utcnow() + LIFETIMES[purpose],
        )
    )
    return token


def consume(
    session: Session, keyring: Keyring, token: str, purpose: Purpose, now: datetime | None = None
) -> User:
    """Use ``token`` once for ``purpose`` and return its user, or raise ``InvalidInput``.

    Every refusal has the same message: the page shows no hint of which check failed. The
    ``used_at IS NULL`` condition on the update makes two concurrent uses end with one winner.
    """
    now = now or utcnow()
    if not token or len(token) > 200:
        raise InvalidInput(REFUSED)
    row = session.scalars(
        select(EmailToken).where(EmailToken.token_hash == keyring.hash_token(token))
    ).first()
    if row is None or row.purpose != purpose or row.used_at is not None or row.expires_at <= now:
        raise InvalidInput(REFUSED)
    user = session.scalars(select(User).where(User.subject == row.subject)).first()
    if user is None or not user.email or canonical_email(user.email) != row.email_canonical:
        raise InvalidInput(REFUSED)
    claimed = session.execute(
        update(EmailToken)
        .where(EmailToken.id == row.id, EmailToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        raise InvalidInput(REFUSED)
    return user
