"""Every path that ends access purges the cached upstream token before it answers, with the
database cache (the default) and with Redis, in a request or not (the command line, a job):
RFC 7009 revocation, a grant revoked, a user blocked, a logout, a client or an integration
deleted, a mapping changed (admin API or ``idbridge mappings import``), and a revocation made
by code running outside any app (a job). THREATS.md "Token exchange" and "Userinfo and
logout"; ``tests/test_token_cache_served.py`` shows the same across real worker processes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from app import create_app, revocation, runtime, shared, tenants
from app.cli import main
from app.models import utcnow
from app.settings import Settings
from app.token_cache import CacheKey
from tests.conftest import empty_tables, make_settings, remember_secret
from tests.idp import IdentityProviderServer
from tests.redis_support import REDIS_URL, needs_redis
from tests.test_exchange import (
    ACCOUNT,
    basic,
    exchange_form,
    put_mapping,
    seed_tenant,
)


@dataclass
class Acme:
    app: Flask
    settings: Settings
    idp: IdentityProviderServer
    admin: dict[str, str]

    @property
    def http(self) -> FlaskClient:
        return self.app.test_client()

    def exchange(self, subject_token: str | None = None) -> str:
        token = subject_token or self.idp.access_token("00u1")
        answer = self.http.post("/t/acme/oauth/token", data=exchange_form(token), headers=basic())
        assert answer.status_code == 200, answer.get_json()
        return remember_secret(answer.get_json()["access_token"])

    def cached(self) -> bool:
        """Whether the cache holds 00u1's token (mapped to ``ada``) of the first exchange."""
        db = runtime.of(self.app).db
        with db.read() as session:
            tenant_id = tenants.find(session, "acme").id
            key = CacheKey(tenant_id, "broker", "00u1", "snowflake-prod", ACCOUNT, "analyst")
            return (
                shared.of(self.app).token_cache.lookup(
                    session, key._replace(upstream_subject="ada")
                )
                is not None
            )

    def cli(self, *args: str) -> Any:
        env = {
            "IDBRIDGE_DATABASE_URL": self.settings.database_url,
            "IDBRIDGE_SECRET_KEY": self.settings.secret_key,
            "IDBRIDGE_INSTANCE_PATH": self.settings.instance_path,
            "IDBRIDGE_REDIS_URL": self.settings.redis_url or "",
        }
        result = CliRunner().invoke(main, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result


@pytest.fixture
def idp() -> Iterator[IdentityProviderServer]:
    with IdentityProviderServer() as server:
        yield server


@pytest.fixture(params=["database", pytest.param("redis", marks=needs_redis)])
def acme(request, tmp_path, database_url, idp, admin_headers) -> Iterator[Acme]:
    # a secret key of its own: the test's Redis entries are named apart from any other test's
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        secret_key=remember_secret("paths-" + secrets.token_hex(24)),
        redis_url=REDIS_URL if request.param == "redis" else None,
    )
    flask_app = create_app(settings)
    empty_tables(runtime.of(flask_app).db)
    seed_tenant(flask_app, "acme", idp)
    state = Acme(flask_app, settings, idp, admin_headers)
    assert put_mapping(state.http, admin_headers, "00u1", "ada").status_code == 201
    try:
        yield state
    finally:
        runtime.of(flask_app).db.dispose()


# --- the paths ------------------------------------------------------------------------------


def rfc7009_revocation(acme: Acme, token: str) -> None:
    answer = acme.http.post("/t/acme/oauth/revoke", data={"token": token}, headers=basic())
    assert answer.status_code == 200


def grant_revoked(acme: Acme, token: str) -> None:
    path = "/admin/v1/tenants/acme/grants/broker/snowflake-prod"
    assert acme.http.delete(path, headers=acme.admin).status_code == 204


def user_blocked(acme: Acme, token: str) -> None:
    path = "/admin/v1/tenants/acme/users/00u1"
    answer = acme.http.patch(path, json={"blocked": True}, headers=acme.admin)
    assert answer.status_code == 200


def logout(acme: Acme, token: str) -> None:
    bearer = {"Authorization": f"Bearer {acme.idp.access_token('00u1')}"}
    assert acme.http.post("/t/acme/oidc/logout", headers=bearer).status_code == 204


def client_deleted(acme: Acme, token: str) -> None:
    path = "/admin/v1/tenants/acme/clients/broker"
    assert acme.http.delete(path, headers=acme.admin).status_code == 204


def integration_deleted(acme: Acme, token: str) -> None:
    path = "/admin/v1/tenants/acme/integrations/snowflake-prod"
    assert acme.http.delete(path, headers=acme.admin).status_code == 204


def mapping_changed(acme: Acme, token: str) -> None:
    assert put_mapping(acme.http, acme.admin, "00u1", "bob").status_code == 200


def mapping_imported(acme: Acme, token: str) -> None:
    csv = Path(acme.settings.instance_path).parent / "mappings.csv"
    csv.write_text("user_id,upstream_subject\n00u1,bob\n")
    acme.cli("mappings", "import", "acme", "snowflake-prod", str(csv))


def revoked_by_a_job(acme: Acme, token: str) -> None:
    """Domain code with no app around (a scheduled job, a command): the same hook. The
    revocation is dated two minutes back, so a token issued now is past its leeway."""
    with runtime.of(acme.app).db.transaction() as session:
        tenants.find(session, "acme")
        revocation.revoke(session, "00u1", "deleted", at=utcnow() - timedelta(minutes=2))


PATHS: list[Callable[[Acme, str], None]] = [
    rfc7009_revocation,
    grant_revoked,
    user_blocked,
    logout,
    client_deleted,
    integration_deleted,
    mapping_changed,
    mapping_imported,
    revoked_by_a_job,
]


@pytest.mark.parametrize("path", PATHS, ids=[path.__name__ for path in PATHS])
def test_every_path_that_ends_access_purges_the_cached_token_before_it_answers(acme, path):
    token = acme.exchange()
    assert acme.exchange() == token  # a hit
    assert acme.cached()
    path(acme, token)
    assert not acme.cached()


# --- what a user sees -----------------------------------------------------------------------


def test_a_mapping_changed_from_the_command_line_and_back_gets_a_new_token(acme, tmp_path):
    """The entry under the first identity went with the first change: the old token is not
    handed out again when the mapping comes back."""
    first = acme.exchange()
    for login in ("bob", "ada"):
        csv = tmp_path / f"{login}.csv"
        csv.write_text(f"user_id,upstream_subject\n00u1,{login}\n")
        acme.cli("mappings", "import", "acme", "snowflake-prod", str(csv))
    assert acme.exchange() != first


def test_a_user_revoked_outside_any_request_is_not_handed_the_old_token(acme):
    first = acme.exchange(acme.idp.access_token("00u1", iat=int(time.time()) - 300))
    revoked_by_a_job(acme, first)
    assert acme.exchange(acme.idp.access_token("00u1")) != first
