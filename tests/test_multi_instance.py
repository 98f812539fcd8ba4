"""Several instances: two real `idbridge serve` (gunicorn, two workers each) on loopback, sharing
one PostgreSQL database and one Redis, as behind a load balancer (CONTRACT: "on every
instance"). What a caller relies on must not depend on which instance answers.

The instances start once for the module (seconds, not minutes); each test uses its own users,
ids and integrations so the order of the tests does not matter. Skipped when no PostgreSQL
answers or no ``redis-server`` is installed (the module starts its own Redis).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import requests
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, select, text

from app import create_app, credentials, migrate, runtime, tenancy, tenants
from app.database import Database
from app.models import Base, IdentityProvider, OutboxMessage, Tenant
from tests import processes
from tests.conftest import ADMIN_TOKEN, _create_postgres_database, make_settings, remember_secret
from tests.idp import IdentityProviderServer
from tests.test_exchange import basic, exchange_form, seed_tenant
from tests.webhook_support import running_smtp, sign

PUBLIC_URL = "http://idbridge.test"  # the load balancer's address: the same for both
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WEBHOOK_SECRET = remember_secret("whsec_" + "bXVsdGktaW5zdGFuY2Utc2VjcmV0LWZvci10ZXN0cw==")


@dataclass
class Pair:
    a: processes.Served
    b: processes.Served
    database_url: str
    idp: IdentityProviderServer
    smtp: object

    def both(self) -> tuple[processes.Served, processes.Served]:
        return self.a, self.b


def _redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = processes.free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url, socket_timeout=1).ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    pytest.skip("redis-server did not start")
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, postgres_server) -> Iterator[Pair]:
    workdir = tmp_path_factory.mktemp("multi")
    redis_servers = _redis_server()
    redis_url = next(redis_servers)
    database_url, drop = _create_postgres_database(postgres_server)
    smtp_servers = running_smtp()
    smtp = next(smtp_servers)
    idp = IdentityProviderServer().start()
    started: list[processes.Served] = []
    try:
        setup = create_app(
            make_settings(workdir / "setup", database_url=database_url, public_url=PUBLIC_URL)
        )
        migrate.upgrade(runtime.of(setup).db)
        seed_tenant(setup, "acme", idp)
        rt = runtime.of(setup)
        with rt.db.transaction() as session:
            credentials.add_webhook_secret(
                session, rt.keyring, tenants.find(session, "acme"), WEBHOOK_SECRET
            )
        rt.db.dispose()
        env = {
            "REDIS_URL": redis_url,
            "SMTP_URL": smtp.url,
            "OUTBOX_INTERVAL": "1",
            "ALLOW_PRIVATE_URLS": "true",
            "PUBLIC_URL": PUBLIC_URL,
        }
        for name in ("a", "b"):
            started.append(processes.serve(workdir / name, database_url, wait=False, **env))
        for served in started:
            processes.wait_ready(served, timeout=90)  # a loaded CI machine boots slowly
        mapped = requests.put(
            started[0].base_url
            + "/admin/v1/tenants/acme/integrations/snowflake-prod/mappings/00u1",
            json={"upstream_subject": "ada"},
            headers=ADMIN,
            timeout=10,
        )
        assert mapped.status_code == 201, mapped.text
        yield Pair(started[0], started[1], database_url, idp, smtp)
    finally:
        for served in started:
            served.stop()
        idp.stop()
        smtp_servers.close()
        drop()
        redis_servers.close()


def _exchange(served: processes.Served, token: str, **extra: str) -> requests.Response:
    return requests.post(
        served.base_url + "/t/acme/oauth/token",
        data=exchange_form(token, **extra),
        headers=basic(),
        timeout=10,
    )


def test_a_cached_upstream_token_obtained_on_a_is_served_by_b(pair):
    token = pair.idp.access_token("00u1")
    first = _exchange(pair.a, token)
    assert first.status_code == 200, first.text
    for _ in range(4):  # both of B's workers: one shared cache, no second token minted
        again = _exchange(pair.b, pair.idp.access_token("00u1"))
        assert again.status_code == 200
        assert again.json()["access_token"] == first.json()["access_token"]


def test_a_grant_revoked_on_a_is_refused_by_b_on_its_next_request(pair):
    form = {"audience": "lake", "scope": "read"}
    assert _exchange(pair.b, pair.idp.access_token("00u2"), **form).status_code == 200
    revoked = requests.delete(
        pair.a.base_url + "/admin/v1/tenants/acme/grants/broker/lake", headers=ADMIN, timeout=10
    )
    assert revoked.status_code == 204
    for _ in range(4):
        refused = _exchange(pair.b, pair.idp.access_token("00u2"), **form)
        assert refused.status_code == 400
        assert refused.json()["error"] == "unauthorized_client"


def test_a_logout_on_a_is_honoured_by_b(pair):
    token = pair.idp.access_token("00u2", sid=f"s-{uuid.uuid4().hex}", auth_time=int(time.time()))
    bearer = {"Authorization": f"Bearer {token}"}
    userinfo = pair.b.base_url + "/t/acme/oidc/userinfo"
    assert requests.get(userinfo, headers=bearer, timeout=10).status_code == 200
    logout = requests.post(pair.a.base_url + "/t/acme/oidc/logout", headers=bearer, timeout=10)
    assert logout.status_code == 204
    for _ in range(4):
        assert requests.get(userinfo, headers=bearer, timeout=10).status_code == 401


def test_a_webhook_retry_landing_on_b_after_a_handled_it_sends_no_second_mail(pair, tmp_path):
    body = '{"id": "00u3"}'
    webhook_id = f"msg_{uuid.uuid4().hex}"
    for served in pair.both():
        answer = requests.post(
            served.base_url + "/t/acme/webhooks/users/send-verification-email",
            data=body,
            headers=sign(WEBHOOK_SECRET, body, webhook_id),
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
    db = Database(make_settings(tmp_path, database_url=pair.database_url))
    try:

        def sent() -> list[str]:
            with db.read() as session:
                tenancy.cross_tenant(session)
                return list(
                    session.scalars(select(OutboxMessage.state).where(OutboxMessage.kind == "mail"))
                )

        deadline = time.monotonic() + 20
        while sent() != ["sent"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sent() == ["sent"]  # one message queued for the two deliveries, and sent
    finally:
        db.dispose()
    assert [message["To"] for message in pair.smtp.messages] == ["00u3@example.com"]


def test_a_signing_key_rotated_on_a_is_published_by_b(pair):
    rotated = requests.post(
        pair.a.base_url + "/admin/v1/tenants/acme/signing-keys", headers=ADMIN, timeout=10
    )
    assert rotated.status_code == 201, rotated.text
    kid = rotated.json()["kid"]
    for _ in range(4):
        published = requests.get(pair.b.base_url + "/t/acme/jwks.json", timeout=10).json()
        assert kid in [key["kid"] for key in published["keys"]]


def test_forwarded_headers_from_an_untrusted_peer_change_nothing_under_gunicorn(pair):
    request_id = uuid.uuid4().hex
    spoofed = {
        "X-Forwarded-For": "203.0.113.66",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "X-Request-Id": request_id,
    }
    answer = requests.get(
        pair.a.base_url + "/t/acme/.well-known/openid-configuration", headers=spoofed, timeout=10
    )
    assert answer.status_code == 200
    assert answer.json()["issuer"] == f"{PUBLIC_URL}/t/acme"
    assert answer.json()["jwks_uri"].startswith(f"{PUBLIC_URL}/t/acme/")
    logged = [
        json.loads(line)
        for line in pair.a.stderr().splitlines()
        if line.startswith("{") and request_id in line
    ]
    assert [line["client"] for line in logged if "status" in line] == ["127.0.0.1"]


def _terminate_connections(server_url: str, database_url: str) -> int:
    name = database_url.rsplit("/", 1)[1]
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                ).all()
            )
    finally:
        admin.dispose()


def test_terminated_database_connections_answer_503_or_succeed_and_recover(
    pair, postgres_server, tmp_path
):
    for served in pair.both():  # every worker holds pooled connections before the fault
        for _ in range(4):
            assert requests.get(served.base_url + "/readyz", timeout=10).status_code == 200
    statuses: dict[str, int] = {}
    retry_after: dict[str, str] = {}
    stop = threading.Event()

    def create_tenants(served: processes.Served, prefix: str) -> None:
        for n in range(40):
            if stop.is_set():
                return
            slug = f"{prefix}-{n}"
            answer = requests.post(
                served.base_url + "/admin/v1/tenants",
                json={"slug": slug, "idp": pair.idp.settings()},
                headers=ADMIN,
                timeout=30,
            )
            statuses[slug] = answer.status_code
            if answer.status_code == 503:
                retry_after[slug] = answer.headers.get("Retry-After", "")

    callers = [
        threading.Thread(target=create_tenants, args=(served, f"fault-{name}-{k}"))
        for name, served in (("a", pair.a), ("b", pair.b))
        for k in range(2)
    ]
    for caller in callers:
        caller.start()
    terminated = 0
    try:
        for _ in range(5):
            time.sleep(0.2)
            terminated += _terminate_connections(postgres_server, pair.database_url)
    finally:
        stop.set()
        for caller in callers:
            caller.join(timeout=60)
    assert terminated > 0
    assert set(statuses.values()) <= {201, 503}, statuses
    assert all(value.isdigit() for value in retry_after.values()), retry_after

    db = Database(make_settings(tmp_path, database_url=pair.database_url))
    try:
        with db.read() as session:
            tenancy.cross_tenant(session)
            present = set(session.scalars(select(Tenant.slug).where(Tenant.slug.like("fault-%"))))
            with_idp = set(
                session.scalars(
                    select(Tenant.slug).join(
                        IdentityProvider, IdentityProvider.tenant_id == Tenant.id
                    )
                )
            )
    finally:
        db.dispose()
    assert {slug for slug, status in statuses.items() if status == 201} <= present
    assert present <= with_idp  # nothing half-written: no tenant without its IdP settings

    # the pools recover by themselves: every worker of both instances answers again
    for served in pair.both():
        for _ in range(6):
            assert requests.get(served.base_url + "/readyz", timeout=10).status_code == 200
            listed = requests.get(served.base_url + "/admin/v1/tenants", headers=ADMIN, timeout=10)
            assert listed.status_code == 200


def test_instances_starting_at_once_on_an_empty_database_migrate_it_once(tmp_path, postgres_server):
    database_url, drop = _create_postgres_database(postgres_server)
    started = [
        processes.serve(tmp_path / f"instance-{n}", database_url, workers=1, wait=False)
        for n in range(4)
    ]
    try:
        for served in started:
            processes.wait_ready(served, timeout=90)  # a loaded CI machine boots slowly
        db = Database(make_settings(tmp_path, database_url=database_url))
        try:
            with db.engine.connect() as connection:
                versions = connection.execute(text("SELECT version_num FROM alembic_version"))
                assert versions.scalars().all() == [migrate.head_revision()]
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                assert compare_metadata(context, Base.metadata) == []
        finally:
            db.dispose()
    finally:
        for served in started:
            served.process.send_signal(signal.SIGTERM)  # all at once, then wait for each
        for served in started:
            served.stop()
        drop()
    for served in started:
        assert "Traceback" not in served.stderr() and '"level": "ERROR"' not in served.stderr()
