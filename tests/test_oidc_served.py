"""The OIDC side end to end over real HTTP: `idbridge serve` (gunicorn, two worker processes,
each with its own key cache) against a real identity provider, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest
import requests

from app import tenants
from app.database import Database
from app.models import User
from tests import processes
from tests.conftest import ADMIN_TOKEN, empty_tables, make_settings
from tests.idp import IdentityProviderServer


@pytest.fixture
def idp():
    with IdentityProviderServer() as server:
        yield server


@pytest.fixture
def served(tmp_path, database_url, idp):
    db = Database(make_settings(tmp_path, database_url=database_url))
    empty_tables(db)
    server = processes.serve(tmp_path, database_url, ALLOW_PRIVATE_URLS="true")
    try:
        created = requests.post(
            server.base_url + "/admin/v1/tenants",
            json={"slug": "acme", "idp": idp.settings()},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        with db.transaction() as session:
            tenants.find(session, "acme")
            session.add(
                User(
                    scim_id="scim-1",
                    subject="00u1",
                    user_name="ada@example.com",
                    user_name_canonical="ada@example.com",
                    customer="C-1",
                    email="ada@example.com",
                    email_canonical="ada@example.com",
                    email_verified=True,
                )
            )
        yield server, db
    finally:
        server.stop()
        db.dispose()


def test_userinfo_and_logout_over_http_on_every_worker(served, idp):
    server, db = served
    url = server.base_url + "/t/acme/oidc"
    token = idp.access_token("00u1", sid="s-1", auth_time=int(time.time()))
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(4):  # spread over both workers
        response = requests.get(url + "/userinfo", headers=headers, timeout=10)
        assert response.status_code == 200
        assert response.json()["sub"] == "00u1" and response.json()["customer"] == "C-1"

    in_query = requests.get(url + "/userinfo", params={"access_token": token}, timeout=10)
    assert in_query.status_code == 400

    assert requests.post(url + "/logout", headers=headers, timeout=10).status_code == 204
    for _ in range(4):
        refused = requests.get(url + "/userinfo", headers=headers, timeout=10)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]

    other = idp.access_token("00u1", sid="s-2", auth_time=int(time.time()))
    assert (
        requests.get(
            url + "/userinfo", headers={"Authorization": f"Bearer {other}"}, timeout=10
        ).status_code
        == 200
    )
    logout_token = idp.logout_token("00u1", sid="s-2")
    answer = requests.post(
        url + "/backchannel-logout", data={"logout_token": logout_token}, timeout=10
    )
    assert answer.status_code == 200
    assert (
        requests.get(
            url + "/userinfo", headers={"Authorization": f"Bearer {other}"}, timeout=10
        ).status_code
        == 401
    )

    with db.read() as session:
        tenants.find(session, "acme")
        user = session.query(User).filter(User.subject == "00u1").one()
        assert user.logins_count == 2  # s-1 and s-2, each counted once

    server.stop()
    logs = server.stderr()
    assert token.rsplit(".", 1)[1] not in logs and logout_token.rsplit(".", 1)[1] not in logs
