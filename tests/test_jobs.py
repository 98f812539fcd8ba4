"""Scheduled jobs run once across instances (``app.jobs``), survive a dead holder, and clean up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta

from sqlalchemy import select

from app import jobs, runtime, tenancy
from app.crypto import Keyring
from app.database import Database
from app.models import (
    ClientAssertionUse,
    EmailToken,
    IssuedTokenRevocation,
    JobLease,
    LogoutTokenUse,
    OutboxMessage,
    Tenant,
    WebhookDelivery,
    utcnow,
)
from app.runtime import Runtime
from tests.conftest import SECRET_KEY, make_settings
from tests.webhook_support import make_tenant

HOUR = timedelta(hours=1)


def _job(runs: list[str], owner: str) -> jobs.Job:
    return jobs.Job(f"test-{uuid.uuid4().hex[:8]}", HOUR, HOUR, lambda _rt: runs.append(owner))


def _runtime(tmp_path, database_url) -> Runtime:
    settings = make_settings(tmp_path, database_url=database_url)
    return Runtime(settings, Database(settings), Keyring(settings.secret_key))


def test_instances_ticking_at_once_run_the_job_once(tmp_path, database_url):
    runtimes = [_runtime(tmp_path, database_url) for _ in range(4)]  # one store each
    runs: list[str] = []
    job = _job(runs, "")
    barrier = threading.Barrier(4)
    answers: list[bool] = []

    def tick(rt: Runtime, owner: str) -> None:
        barrier.wait(timeout=10)
        answers.append(jobs.run(rt, job, owner))

    threads = [
        threading.Thread(target=tick, args=(rt, f"instance-{n}")) for n, rt in enumerate(runtimes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for rt in runtimes:
        rt.db.dispose()
    assert sorted(answers) == [False, False, False, True]
    assert len(runs) == 1


def test_the_lease_is_kept_until_the_next_run_is_due(tmp_path, database_url):
    db = Database(make_settings(tmp_path, database_url=database_url))
    name, now = f"test-{uuid.uuid4().hex[:8]}", utcnow()
    try:
        assert jobs.take(db, name, "a", HOUR, now)
        assert not jobs.take(db, name, "b", HOUR, now)  # running on a
        jobs.finish(db, name, "a", now + timedelta(minutes=15))
        assert not jobs.take(db, name, "b", HOUR, now + timedelta(minutes=14))  # ran already
        assert jobs.take(db, name, "b", HOUR, now + timedelta(minutes=15))  # due again
        jobs.finish(db, name, "a", now)  # a's late finish does not free b's run
        assert not jobs.take(db, name, "c", HOUR, now + timedelta(minutes=16))
    finally:
        db.dispose()


_HOLDER = """
import pathlib, sys, time
from datetime import timedelta
from app import create_app, jobs, runtime

def work(_rt):
    pathlib.Path(sys.argv[1]).write_text("running")
    time.sleep(120)

job = jobs.Job(sys.argv[2], timedelta(hours=1), timedelta(minutes=10), work)
jobs.run(runtime.of(create_app()), job, "doomed-instance")
"""


def test_a_holder_killed_mid_job_frees_it_when_its_hold_ends(tmp_path, database_url):
    name, marker = f"test-{uuid.uuid4().hex[:8]}", tmp_path / "running"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDBRIDGE_")} | {
        "IDBRIDGE_DATABASE_URL": database_url,
        "IDBRIDGE_SECRET_KEY": SECRET_KEY,
        "IDBRIDGE_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(marker), name], env=env, stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and holder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the holder never started its run"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    runs: list[str] = []
    survivor = jobs.Job(name, HOUR, timedelta(minutes=10), lambda _rt: runs.append("survivor"))
    rt = _runtime(tmp_path, database_url)
    try:
        assert not jobs.run(rt, survivor, "survivor")  # the dead holder's hold still runs
        assert runs == []
        later = utcnow() + timedelta(minutes=10, seconds=1)
        assert jobs.take(rt.db, name, "survivor", survivor.hold, later)  # its hold ended
        with rt.db.read() as session:
            assert session.get(JobLease, name).owner == "survivor"
    finally:
        rt.db.dispose()


def test_cleanup_deletes_expired_rows_and_keeps_live_ones(app):
    rt = runtime.of(app)
    make_tenant(app)
    now = utcnow()
    old, fresh = now - timedelta(days=8), now + timedelta(minutes=5)
    with rt.db.transaction() as session:
        tenancy.cross_tenant(session)
        tenant_id = session.scalar(select(Tenant.id))
        for label, at in (("old", old), ("fresh", now)):
            session.add(
                WebhookDelivery(
                    tenant_id=tenant_id, webhook_id=label, operation="get", created_at=at
                )
            )
            session.add(
                OutboxMessage(
                    tenant_id=tenant_id,
                    idempotency_key=label,
                    kind="mail",
                    payload_sealed="x",
                    state="sent",
                    sent_at=at,
                )
            )
        session.add(
            OutboxMessage(
                tenant_id=tenant_id,
                idempotency_key="dead",
                kind="mail",
                payload_sealed="x",
                state="dead",
                next_attempt_at=old,
            )
        )
        for label, expires in (("old", old), ("fresh", fresh)):
            session.add(
                ClientAssertionUse(
                    tenant_id=tenant_id, client_id="broker", jti=label, expires_at=expires
                )
            )
            session.add(LogoutTokenUse(tenant_id=tenant_id, jti=label, expires_at=expires))
            session.add(IssuedTokenRevocation(tenant_id=tenant_id, jti=label, expires_at=expires))
            session.add(
                EmailToken(
                    tenant_id=tenant_id,
                    token_hash=label,
                    purpose="verify",
                    subject="00u1",
                    email_canonical="ada@example.com",
                    expires_at=expires,
                )
            )
    jobs.cleanup(rt)
    with rt.db.read() as session:
        tenancy.cross_tenant(session)
        assert session.scalars(select(WebhookDelivery.webhook_id)).all() == ["fresh"]
        assert sorted(session.scalars(select(OutboxMessage.idempotency_key))) == ["dead", "fresh"]
        assert session.scalars(select(ClientAssertionUse.jti)).all() == ["fresh"]
        assert session.scalars(select(LogoutTokenUse.jti)).all() == ["fresh"]
        assert session.scalars(select(IssuedTokenRevocation.jti)).all() == ["fresh"]
        assert session.scalars(select(EmailToken.token_hash)).all() == ["fresh"]
