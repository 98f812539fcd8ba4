"""Scheduled jobs that run once across instances: outbox sending, key rotation, cleanup.

Every ``idbridge serve`` worker of every instance schedules the same APScheduler jobs
(``start``), and a lease row per job in the shared database decides which one does a run:
``take`` claims the job in one transaction (the row locked ``FOR UPDATE`` on PostgreSQL, the
write lock of ``BEGIN IMMEDIATE`` on SQLite; two instances inserting the first row at once
meet on the primary key and one loses). A run holds the lease for at most ``Job.hold``; when it
ends, the lease is kept until the next run is due, so the job runs once per interval across
the fleet, whichever worker ticks first. A worker or instance that dies mid-run frees the job
when its ``hold`` ends, and another takes over.

Why a lease table and not PostgreSQL advisory locks: advisory locks do not exist on SQLite,
are tied to one pooled connection (lost, or worse kept, with it; unusable behind a pgbouncer
in transaction mode), and say nothing about when a job last ran. A lease row works the same on
both stores and shows the operator who holds what (``SELECT * FROM job_leases``). The times
are the instances' clocks: keep them in sync (NTP); the holds are minutes, far above any skew.

Jobs run with the worker's runtime (its settings, keys and connection pool) and never raise
into the scheduler thread.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, update

from app import key_rotation, outbox, revocation, tenancy
from app.database import Database
from app.errors import Conflict
from app.idempotency import KEEP_DELIVERIES
from app.models import (
    CachedToken,
    ClientAssertionUse,
    EmailToken,
    IssuedTokenRevocation,
    JobLease,
    LogoutTokenUse,
    OutboxMessage,
    WebhookDelivery,
    utcnow,
)
from app.runtime import Runtime
from app.settings import Settings

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

KEEP_EXPIRED_LINKS = timedelta(hours=24)  # an expired mail link still says "expired" a day
KEEP_SENT_MESSAGES = timedelta(days=7)  # sent mail and IdP calls, for the operator to look up
CLEANUP_EVERY = timedelta(hours=1)
log = logging.getLogger("idbridge.jobs")


@dataclass(frozen=True)
class Job:
    name: str
    every: timedelta
    hold: timedelta  # the longest a run may take; a holder that dies frees the job after it
    work: Callable[[Runtime], Any]


def take(db: Database, name: str, owner: str, hold: timedelta, now: datetime | None = None) -> bool:
    """Claim job ``name`` for ``owner`` until ``now + hold`` unless another holds it."""
    now = now or utcnow()
    try:
        with db.transaction() as session:
            lease = session.get(JobLease, name, with_for_update=True)
            if lease is None:
                session.add(JobLease(name=name, owner=owner, expires_at=now + hold))
            elif lease.expires_at <= now:
                lease.owner, lease.expires_at = owner, now + hold
            else:
                return False
    except Conflict:  # another instance inserted the first row at the same moment
        return False
    return True


def finish(db: Database, name: str, owner: str, until: datetime) -> None:
    """Keep ``owner``'s lease until ``until`` (the next run), unless it was taken over."""
    with db.transaction() as session:
        session.execute(
            update(JobLease)
            .where(JobLease.name == name, JobLease.owner == owner)
            .values(expires_at=until)
        )


def run(rt: Runtime, job: Job, owner: str) -> bool:
    """One tick of ``job`` in this process: run it if the lease is free; never raises."""
    try:
        started = utcnow()
        if not take(rt.db, job.name, owner, job.hold, started):
            return False
        try:
            job.work(rt)
        finally:
            finish(rt.db, job.name, owner, started + job.every)
        return True
    except Exception:  # the scheduler thread must survive a database outage
        log.exception("job %s failed; the next run tries again", job.name)
        return False


def cleanup(rt: Runtime, now: datetime | None = None) -> None:
    """Delete what nothing needs any more, in one transaction: webhook ids older than a day,
    used ``jti``s of expired client assertions (RFC 7523 §3) and logout tokens (Back-Channel
    Logout §2.6), revocations of issued tokens that have expired (RFC 7009), session
    revocations no valid token can meet any more (``app.revocation.expired``: an ended
    session's rows live at least ``IDBRIDGE_SESSION_MAX_AGE``), cached upstream tokens past
    their use and single-flight leases that ended (``app.token_cache_db``), mail links a day
    past expiry, and outbox messages sent more than a week ago."""
    now = now or utcnow()
    epoch = now.timestamp()
    statements = (
        delete(WebhookDelivery).where(WebhookDelivery.created_at < now - KEEP_DELIVERIES),
        delete(ClientAssertionUse).where(ClientAssertionUse.expires_at < now),
        delete(LogoutTokenUse).where(LogoutTokenUse.expires_at < now),
        delete(IssuedTokenRevocation).where(IssuedTokenRevocation.expires_at < now),
        revocation.expired(now, timedelta(seconds=rt.settings.session_max_age)),
        delete(CachedToken).where(CachedToken.good_until < epoch, CachedToken.lease_until < epoch),
        delete(EmailToken).where(EmailToken.expires_at < now - KEEP_EXPIRED_LINKS),
        delete(OutboxMessage).where(
            OutboxMessage.state == "sent", OutboxMessage.sent_at < now - KEEP_SENT_MESSAGES
        ),
    )
    with rt.db.transaction() as session:
        tenancy.cross_tenant(session)
        for statement in statements:
            session.execute(statement.execution_options(synchronize_session=False))


def scheduled(settings: Settings) -> list[Job]:
    """The jobs every instance schedules (the outbox only when its interval is not 0)."""
    jobs = [
        Job(
            "rotate-signing-keys",
            key_rotation.CHECK_EVERY,
            timedelta(minutes=10),
            lambda rt: key_rotation.rotate_due_keys(rt.settings),
        ),
        Job("cleanup", CLEANUP_EVERY, timedelta(minutes=10), cleanup),
    ]
    if settings.outbox_interval > 0:
        every = timedelta(seconds=settings.outbox_interval)
        jobs.append(Job("outbox", every, outbox.LEASE, outbox.send_due))
    return jobs


def start(rt: Runtime) -> BackgroundScheduler:
    """Schedule every job in this process (``idbridge serve``: each gunicorn worker, with the
    worker's own runtime and pool)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    scheduler = BackgroundScheduler(timezone="UTC", daemon=True)
    for job in scheduled(rt.settings):
        scheduler.add_job(
            run,
            "interval",
            args=[rt, job, owner],
            seconds=job.every.total_seconds(),
            id=job.name,
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow(),
        )
    scheduler.start()
    return scheduler
