"""A ``jti`` used once: ``private_key_jwt`` client assertions (RFC 7523 §3 item 7) and
back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0 §2.6 item 10).

A use is recorded in the transaction it is given and kept until the token expires (then swept
here). A logout token is recorded in the logout's own transaction, so a logout that failed can
be retried with it; a client assertion in a transaction of its own that commits at client
authentication (``app.assertions.authenticate``), so it is spent whatever follows.
``DatabaseReplayStore`` is the durable record: its unique constraint refuses a second use, even
by a concurrent request on another instance. ``app.shared_redis.RedisReplayStore`` claims the
``jti`` in Redis first (shared by every instance, no database write for a replay) and then
records it here too, so a Redis that lost its data still cannot let a replay through.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import ClientAssertionUse, LogoutTokenUse, utcnow


class Kind(StrEnum):
    CLIENT_ASSERTION = "client-assertion"
    LOGOUT_TOKEN = "logout-token"


@dataclass(frozen=True)
class Use:
    kind: Kind
    tenant_id: int
    jti: str
    expires_at: datetime
    client_id: str = ""  # assertions: a jti is unique per client (RFC 7523 §3 item 7)


class ReplayStore(Protocol):
    def first_use(self, session: Session, use: Use) -> bool:
        """Record ``use`` in ``session``'s transaction; ``False`` when it was seen before."""
        ...


class DatabaseReplayStore:
    def first_use(self, session: Session, use: Use) -> bool:
        model: type[ClientAssertionUse] | type[LogoutTokenUse]
        if use.kind is Kind.CLIENT_ASSERTION:
            model = ClientAssertionUse
            row = ClientAssertionUse(
                tenant_id=use.tenant_id,
                client_id=use.client_id,
                jti=use.jti,
                expires_at=use.expires_at,
            )
            seen = select(ClientAssertionUse.id).where(
                ClientAssertionUse.client_id == use.client_id, ClientAssertionUse.jti == use.jti
            )
        else:
            model = LogoutTokenUse
            row = LogoutTokenUse(tenant_id=use.tenant_id, jti=use.jti, expires_at=use.expires_at)
            seen = select(LogoutTokenUse.id).where(LogoutTokenUse.jti == use.jti)
        session.execute(delete(model).where(model.expires_at < utcnow()))
        if session.scalar(seen) is not None:
            return False
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            return False  # a concurrent use committed first
        return True


def first_use(session: Session, use: Use) -> bool:
    """``first_use`` of the app's store (``app.shared``)."""
    from app import shared

    return shared.of_session(session).replay.first_use(session, use)
