"""A ``private_key_jwt`` assertion authenticates a client once, on any endpoint (RFC 7523 §3
item 7; THREATS.md "Every path": an assertion used at a refused exchange, at introspection or
at revocation, then again anywhere, is refused).

The endpoints that authenticate clients are read from the committed OpenAPI document (every
operation secured by client authentication whose form takes ``client_assertion``), so a new
one fails ``test_every_endpoint_that_authenticates_clients_has_a_first_use`` until it is
covered here. Each first use, whatever its outcome (a token, a refused exchange, a 503 from
the upstream, an introspection answering ``active: false``, a revocation that changes
nothing), spends the assertion on every endpoint: on SQLite and PostgreSQL, with the database
as the shared state and with Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import clients, create_app, integrations, runtime, tenants
from app.schemas import ClientSchema, IntegrationSchema
from tests.conftest import empty_tables, make_settings, remember_secret
from tests.idp import IdentityProviderServer, SigningKey, new_key
from tests.processes import free_port
from tests.redis_support import OwnRedis
from tests.test_exchange import basic, exchange_form, put_mapping, seed_tenant

OPENAPI_YAML = Path(__file__).resolve().parent.parent / "openapi.yaml"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN = "/t/{tenant}/oauth/token"
INTROSPECT = "/t/{tenant}/oauth/introspect"
REVOKE = "/t/{tenant}/oauth/revoke"


def assertion_endpoints() -> list[str]:
    """``METHOD path`` of every documented operation that authenticates clients and takes a
    ``client_assertion`` (RFC 7523 §2.2)."""
    document = yaml.safe_load(OPENAPI_YAML.read_text())
    schemes = document["components"]["securitySchemes"]
    client_schemes = {name for name, scheme in schemes.items() if scheme.get("scheme") == "basic"}
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            secured = any(client_schemes & set(item) for item in operation.get("security", []))
            content = operation.get("requestBody", {}).get("content", {})
            form = content.get("application/x-www-form-urlencoded", {}).get("schema", {})
            if secured and "client_assertion" in form.get("properties", {}):
                found.append(f"{method.upper()} {path}")
    return sorted(found)


ENDPOINTS = assertion_endpoints()


@pytest.fixture
def idp() -> Iterator[IdentityProviderServer]:
    with IdentityProviderServer() as server:
        yield server


@pytest.fixture(params=["database", "redis"])
def redis_server(request, tmp_path) -> Iterator[OwnRedis | None]:
    """The shared state: the database alone, or a Redis of this test's own."""
    if request.param == "database":
        yield None
        return
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Acme:
    app: Flask
    key: SigningKey

    @property
    def http(self) -> FlaskClient:
        return self.app.test_client()

    def assertion(self) -> str:
        """A fresh, valid assertion of client ``keyed`` for the token endpoint."""
        issuer = f"{runtime.of(self.app).settings.public_url}/t/acme"
        now = int(time.time())
        claims = {
            "iss": "keyed",
            "sub": "keyed",
            "aud": f"{issuer}/oauth/token",
            "iat": now,
            "exp": now + 120,
            "jti": f"jti-{time.monotonic_ns()}",
        }
        signed = jwt.encode(
            claims, self.key.private, algorithm=self.key.algorithm, headers={"kid": self.key.kid}
        )
        return remember_secret(signed)


@pytest.fixture
def acme(tmp_path, database_url, redis_server, idp, admin_headers) -> Iterator[Acme]:
    """Tenant acme (``test_exchange.seed_tenant``) plus client ``keyed`` that authenticates
    with private_key_jwt, granted Snowflake and ``down``: an rfc8693 integration whose token
    endpoint is a loopback port nobody listens on (its exchanges end in 503)."""
    redis_url = redis_server.url if redis_server else ""
    settings = make_settings(tmp_path, database_url=database_url, redis_url=redis_url)
    flask_app = create_app(settings)
    rt = runtime.of(flask_app)
    empty_tables(rt.db)
    seed_tenant(flask_app, "acme", idp)
    assert put_mapping(flask_app.test_client(), admin_headers, "00u1", "ada").status_code == 201
    key = new_key("ES256")
    with rt.db.transaction() as session:
        tenant = tenants.find(session, "acme")
        down = integrations.create(
            session,
            rt.keyring,
            tenant,
            IntegrationSchema().load(
                {
                    "name": "down",
                    "kind": "rfc8693",
                    "flow": "brokered",
                    "token_endpoint": f"http://127.0.0.1:{free_port()}/token",
                    "client_id": "keyed",
                    "audience": "https://down.example",
                    "user_mapping": {"source": "subject"},
                }
            ),
        )
        keyed, _ = clients.create(
            session,
            rt.keyring,
            tenant,
            ClientSchema().load(
                {
                    "client_id": "keyed",
                    "audiences": ["snowflake-prod", "down"],
                    "scopes": ["analyst"],
                    "may_impersonate": True,
                    "jwks": {"keys": [key.public_jwk()]},
                }
            ),
        )
        session.flush()
        integrations.grant(session, keyed, integrations.find(session, "snowflake-prod"))
        integrations.grant(session, keyed, down)
    try:
        yield Acme(flask_app, key)
    finally:
        rt.db.dispose()


def with_assertion(form: dict[str, Any], signed: str) -> dict[str, Any]:
    return form | {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}


def call(acme: Acme, endpoint: str, form: dict[str, Any], signed: str) -> TestResponse:
    method, path = endpoint.split(" ")
    assert method == "POST", endpoint
    return acme.http.post(path.format(tenant="acme"), data=with_assertion(form, signed))


def a_request(acme: Acme, idp: IdentityProviderServer, endpoint: str) -> dict[str, Any]:
    """A request to ``endpoint`` that a fresh assertion would get through (its outcome apart)."""
    if endpoint == f"POST {TOKEN}":
        return exchange_form(idp.access_token("00u1"))
    return {"token": "not-a-token-of-this-client"}


@dataclass(frozen=True)
class FirstUse:
    """A first use of an assertion at ``endpoint`` and the answer it must get there."""

    endpoint: str
    form: Callable[[Acme, IdentityProviderServer], dict[str, Any]]
    status: int
    check: Callable[[dict[str, Any] | None], bool] = lambda _body: True


def _exchange_for(subject: str, **extra: Any) -> Callable[..., dict[str, Any]]:
    return lambda _acme, idp: exchange_form(idp.access_token(subject), **extra)


def _issued_token(acme: Acme, idp: IdentityProviderServer) -> dict[str, Any]:
    """A token idbridge issued to the broker (not to ``keyed``): introspects inactive."""
    form = exchange_form(idp.access_token("00u1"), audience="lake", scope="read")
    issued = acme.http.post("/t/acme/oauth/token", data=form, headers=basic())
    assert issued.status_code == 200, issued.get_json()
    return {"token": remember_secret(issued.get_json()["access_token"])}


FIRST_USES = {
    "exchange-succeeds": FirstUse(f"POST {TOKEN}", _exchange_for("00u1"), 200),
    "exchange-refused": FirstUse(
        f"POST {TOKEN}",
        _exchange_for("00u2"),  # no Snowflake identity
        400,
        lambda body: body is not None and body["error"] == "user_not_provisioned",
    ),
    "exchange-upstream-down": FirstUse(
        f"POST {TOKEN}",
        _exchange_for("00u1", audience="down", scope=None),
        503,
        lambda body: body is not None and body["error"] == "temporarily_unavailable",
    ),
    "introspection-inactive": FirstUse(
        f"POST {INTROSPECT}", _issued_token, 200, lambda body: body == {"active": False}
    ),
    "revocation-of-nothing": FirstUse(f"POST {REVOKE}", _issued_token, 200),
}


def test_every_endpoint_that_authenticates_clients_has_a_first_use():
    assert ENDPOINTS, "no documented operation takes client_assertion"
    covered = {use.endpoint for use in FIRST_USES.values()}
    assert covered == set(ENDPOINTS), (
        "each endpoint that authenticates clients needs a first use in FIRST_USES"
    )


@pytest.mark.parametrize("case", sorted(FIRST_USES))
def test_an_assertion_is_spent_at_its_first_use_whatever_follows(acme, idp, case):
    first_use = FIRST_USES[case]
    signed = acme.assertion()
    form = {key: value for key, value in first_use.form(acme, idp).items() if value is not None}
    first = call(acme, first_use.endpoint, form, signed)
    assert first.status_code == first_use.status, first.get_data(as_text=True)
    assert first_use.check(first.get_json(silent=True))
    for endpoint in ENDPOINTS:
        again = call(acme, endpoint, a_request(acme, idp, endpoint), signed)
        assert again.status_code == 401, (endpoint, again.get_json())
        assert again.get_json()["error"] == "invalid_client"
        assert "used before" in again.get_json()["error_description"]
        fresh = call(acme, endpoint, a_request(acme, idp, endpoint), acme.assertion())
        assert fresh.status_code == 200, (endpoint, fresh.get_json())  # the client still can


@pytest.mark.parametrize("redis_server", ["redis"], indirect=True)
def test_a_redis_that_cannot_record_the_jti_refuses_with_503(acme, idp, redis_server):
    signed = acme.assertion()
    redis_server.stop()
    for endpoint in ENDPOINTS:
        refused = call(acme, endpoint, a_request(acme, idp, endpoint), signed)
        assert refused.status_code == 503, (endpoint, refused.get_json())
        assert refused.get_json()["error"] == "temporarily_unavailable"
        assert refused.headers["Retry-After"].isdigit()


def test_a_secret_costs_no_write_transaction_to_authenticate(acme, monkeypatch):
    """The hot path (``client_secret_basic``): introspection writes nothing at all; an
    assertion costs exactly the one write that spends it."""
    db = runtime.of(acme.app).db
    writes: list[int] = []
    transaction = db.transaction

    def counted() -> Any:
        writes.append(1)
        return transaction()

    monkeypatch.setattr(db, "transaction", counted)
    form = {"token": "not-a-token"}
    by_secret = acme.http.post("/t/acme/oauth/introspect", data=form, headers=basic())
    assert by_secret.status_code == 200 and writes == []
    by_assertion = call(acme, f"POST {INTROSPECT}", form, acme.assertion())
    assert by_assertion.status_code == 200 and writes == [1]
