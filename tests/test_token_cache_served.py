"""The upstream-token cache across the real workers of ``idbridge serve`` on its embedded
default (SQLite, no Redis, 2 gunicorn workers): one cache for the deployment.

Every request goes on a connection of its own, so either worker may take it; each answer's
worker is read from its access-log line (``pid``, matched by ``X-Request-Id``), and a check
that needs both workers sends requests (at most ``LIMIT``) until each has answered. Shown:
two exchanges in a row get one token whichever worker answers; a token revoked through one
worker (RFC 7009, logout, block, grant revocation) is never handed out again by either;
concurrent first requests on both workers make one upstream call.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from app import clients, create_app, integrations, migrate, runtime, tenants
from app.models import User
from app.schemas import ClientSchema, IntegrationSchema, TenantSchema
from tests import processes
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.fake_salesforce import FakeSalesforce
from tests.idp import IdentityProviderServer
from tests.test_exchange import BROKER_SECRET, basic, exchange_form

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FLIGHT_USERS = ("u-flight-1", "u-flight-2", "u-flight-3")
USERS = ("u-row", "u-rfc7009", "u-logout", "u-block", "u-grant", *FLIGHT_USERS)
LIMIT = 60  # requests per check, at most
EACH = 3  # answers each worker must have given


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    pid: int

    @property
    def token(self) -> str:
        return self.body.get("access_token", "")


@dataclass
class Served:
    server: processes.Served
    idp: IdentityProviderServer
    salesforce: FakeSalesforce

    def post(self, path: str, data: dict[str, Any], headers: dict[str, str]) -> Answer:
        """One request on a connection of its own; the answer with the worker that gave it."""
        request_id = uuid.uuid4().hex
        response = requests.post(
            self.server.base_url + path,
            data=data,
            headers=headers | {"X-Request-Id": request_id, "Connection": "close"},
            timeout=30,
        )
        body = response.json() if response.content else {}
        return Answer(response.status_code, body, self._pid(request_id))

    def _pid(self, request_id: str) -> int:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for line in self.server.stderr().splitlines():
                if request_id in line and line.startswith("{"):
                    entry = json.loads(line)
                    if entry.get("request_id") == request_id and entry.get("status"):
                        return entry["pid"]
            time.sleep(0.05)
        raise AssertionError("no access-log line for the request")

    def exchange(self, subject_token: str, **form: str) -> Answer:
        return self.post("/t/acme/oauth/token", exchange_form(subject_token, **form), basic())

    def until_both_workers(self, subject_token: str, **form: str) -> list[Answer]:
        """Exchanges until each worker answered ``EACH`` times (at most ``LIMIT``)."""
        answers: list[Answer] = []
        while len(answers) < LIMIT:
            answers.append(self.exchange(subject_token, **form))
            counts = [sum(1 for a in answers if a.pid == pid) for pid in {a.pid for a in answers}]
            if len(counts) == 2 and min(counts) >= EACH:
                return answers
        pytest.fail(f"both workers did not answer within {LIMIT} requests")

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> int:
        response = requests.request(
            method, self.server.base_url + "/admin/v1" + path, json=body, headers=ADMIN, timeout=10
        )
        return response.status_code


def _seed(flask_app: Any, idp: IdentityProviderServer, salesforce: FakeSalesforce) -> None:
    rt = runtime.of(flask_app)
    with rt.db.transaction() as session:
        tenants.create(
            session, rt.keyring, TenantSchema().load({"slug": "acme", "idp": idp.settings()})
        )
    with rt.db.transaction() as session:
        tenant = tenants.find(session, "acme")
        for subject in USERS:
            session.add(
                User(
                    scim_id=f"scim-{subject}",
                    subject=subject,
                    user_name=subject,
                    user_name_canonical=subject,
                )
            )
        template = {"source": "template", "template": "user:${subject}"}
        rows = [
            integrations.create(
                session,
                rt.keyring,
                tenant,
                IntegrationSchema().load(data),
            )
            for data in (
                {
                    "name": "lake",
                    "kind": "jwt",
                    "audience": "https://lake.example",
                    "user_mapping": template,
                },
                {
                    "name": "vault",
                    "kind": "jwt",
                    "audience": "https://vault.example",
                    "user_mapping": template,
                },
                {
                    "name": "crm",
                    "kind": "salesforce",
                    "token_endpoint": salesforce.token_endpoint,
                    "client_id": "3MVG9consumer-key",
                    "user_mapping": {"source": "subject"},
                    "token_lifetime": 1200,
                },
            )
        ]
        session.flush()
        broker, _ = clients.create(
            session,
            rt.keyring,
            tenant,
            ClientSchema().load(
                {
                    "client_id": "broker",
                    "audiences": [row.name for row in rows],
                    "scopes": ["read", "api"],
                    "may_impersonate": True,
                }
            ),
            secret=BROKER_SECRET,
        )
        for row in rows:
            integrations.grant(session, broker, row)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("served-cache")
    database_url = f"sqlite:///{workdir / 'idbridge.db'}"
    with IdentityProviderServer() as idp, FakeSalesforce() as salesforce:
        setup = create_app(make_settings(workdir / "setup", database_url=database_url))
        migrate.upgrade(runtime.of(setup).db)
        _seed(setup, idp, salesforce)
        runtime.of(setup).db.dispose()
        server = processes.serve(
            workdir / "serve", database_url, workers=2, ALLOW_PRIVATE_URLS="true"
        )
        try:
            yield Served(server, idp, salesforce)
        finally:
            server.stop()


LAKE = {"audience": "lake", "scope": "read"}


def test_exchanges_in_a_row_get_one_token_whichever_worker_answers(served):
    answers = served.until_both_workers(served.idp.access_token("u-row"), **LAKE)
    assert {answer.status for answer in answers} == {200}
    assert len({answer.token for answer in answers}) == 1


def _rfc7009(served: Served, subject: str, tokens: set[str]) -> str:
    for token in tokens:
        assert served.post("/t/acme/oauth/revoke", {"token": token}, basic()).status == 200
    return served.idp.access_token(subject)


def _logout(served: Served, subject: str, tokens: set[str]) -> str:
    bearer = {"Authorization": f"Bearer {served.idp.access_token(subject, sid='s-1')}"}
    assert served.post("/t/acme/oidc/logout", {}, bearer).status == 204
    return served.idp.access_token(subject, sid="s-2")  # the user signs in again


def _block(served: Served, subject: str, tokens: set[str]) -> str:
    assert served.admin("PATCH", f"/tenants/acme/users/{subject}", {"blocked": True}) == 200
    assert served.admin("PATCH", f"/tenants/acme/users/{subject}", {"blocked": False}) == 200
    # the first token the block lets in: issued more than the leeway (60 s) after it, which the
    # same leeway accepts from an IdP clock ahead of idbridge's (README, Logout)
    time.sleep(2.1)
    return served.idp.access_token(subject, iat=int(time.time()) + 59)


def _grant(served: Served, subject: str, tokens: set[str]) -> str:
    assert served.admin("DELETE", "/tenants/acme/grants/broker/vault") == 204
    grant = {"client_id": "broker", "integration": "vault"}
    assert served.admin("POST", "/tenants/acme/grants", grant) == 201
    return served.idp.access_token(subject)


REVOCATIONS = {
    "rfc7009": ("u-rfc7009", LAKE, _rfc7009),
    "logout": ("u-logout", LAKE, _logout),
    "block": ("u-block", LAKE, _block),
    "grant": ("u-grant", {"audience": "vault", "scope": "read"}, _grant),
}


@pytest.mark.parametrize("revocation", REVOCATIONS)
def test_a_token_revoked_through_one_worker_is_never_handed_out_by_either(served, revocation):
    subject, form, revoke = REVOCATIONS[revocation]
    before = served.until_both_workers(served.idp.access_token(subject, sid="s-1"), **form)
    revoked = {answer.token for answer in before}  # one, unless each worker had its own
    subject_token = revoke(served, subject, revoked)
    after = served.until_both_workers(subject_token, **form)
    assert {answer.status for answer in after} == {200}
    assert not revoked & {answer.token for answer in after}, "a revoked token came back"
    assert len({answer.token for answer in after}) == 1
    assert len(revoked) == 1, "each worker had its own token"


def test_concurrent_first_requests_on_both_workers_make_one_upstream_call(served):
    """A burst of first requests for one key (a user not asked for before); a burst that only
    one worker happened to take proves nothing, so another user's burst follows (at most
    ``len(FLIGHT_USERS)``)."""
    served.salesforce.mode, served.salesforce.delay = "slow", 1.5
    for subject in FLIGHT_USERS:
        served.salesforce.requests.clear()
        subject_token = served.idp.access_token(subject)
        answers: list[Answer] = []

        def exchange(token: str = subject_token, into: list[Answer] = answers) -> None:
            into.append(served.exchange(token, audience="crm", scope="api"))

        threads = [threading.Thread(target=exchange) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert [answer.status for answer in answers] == [200] * 8
        assert len({answer.token for answer in answers}) == 1
        assert len(served.salesforce.requests) == 1
        if len({answer.pid for answer in answers}) == 2:
            return  # both workers were asked
    pytest.fail("no burst reached both workers")
