"""Each real caller of the outbound guard, with private URLs disallowed, given a URL that points
at a server on 127.0.0.9: a JWKS fetch, an RFC 8693 upstream token endpoint, an IdP connector.
The surface answers what it answers for any unreachable server (503 ``temporarily_unavailable``
at the token endpoint, 503 at the webhook) and the server sees no connection at all.

The URLs are written into the rows directly, as a row stored before the configuration check
existed would hold them (``apply`` and the admin API refuse them now, tests/test_outbound_config).
For the token endpoint, the subject token must first be verified: the test IdP on 127.0.0.1
then stands in for a public server (the address policy counts 127.0.0.1, and only it, as public).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from app import create_app, integrations, outbound, runtime, tenants
from tests.conftest import empty_tables, make_settings, remember_secret
from tests.idp import IdentityProviderServer
from tests.outbound_support import CountingServer, public_only
from tests.test_exchange import Live, basic
from tests.test_upstream_exchange import BROKER_SECRET, seed_first
from tests.webhook_support import add_user, make_tenant, signed

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
POINTED = [
    "http://127.0.0.9:{port}\\@1.1.1.1/",  # the parser differential
    "http://127.0.0.9:{port}/",  # a plain loopback address
    "http://user@127.0.0.9:{port}/",
    "http://2130706441:{port}/",
]


@pytest.fixture
def counting() -> Iterator[CountingServer]:
    with CountingServer("127.0.0.9") as server:
        yield server


@pytest.fixture
def strict_app(tmp_path, database_url) -> Iterator[Flask]:
    """A deployment that disallows private URLs."""
    settings = make_settings(tmp_path, database_url=database_url, allow_private_urls=False)
    flask_app = create_app(settings)
    empty_tables(runtime.of(flask_app).db)
    yield flask_app
    runtime.of(flask_app).db.dispose()


@pytest.fixture
def public_loopback(monkeypatch) -> None:
    """127.0.0.1 (the test IdP) stands in for a public server; 127.0.0.9 stays what it is."""
    monkeypatch.setattr(outbound, "POLICY", outbound.AddressPolicy(public=public_only("127.0.0.1")))


@pytest.fixture
def idp() -> Iterator[IdentityProviderServer]:
    with IdentityProviderServer() as server:
        yield server


def seed(flask_app: Flask, idp: IdentityProviderServer) -> None:
    """Tenant acme trusting the IdP, the broker granted an rfc8693 integration ``crm``."""
    integration: dict[str, Any] = {
        "name": "crm",
        "kind": "rfc8693",
        "flow": "brokered",
        "token_endpoint": "https://crm.example/oauth/token",
        "client_id": "broker",
        "client_secret": "cs_upstream-secret-" + "x" * 32,
        "audience": "https://crm.example",
        "user_mapping": {"source": "subject"},
    }
    seed_first(Live(flask_app, ""), idp, integration)


def store(flask_app: Flask, **columns: str) -> None:
    """Write URLs into acme's rows, past the configuration check."""
    with runtime.of(flask_app).db.transaction() as session:
        tenant = tenants.find(session, "acme")
        idp = tenant.identity_provider
        if "jwks_uri" in columns:
            idp.jwks_uri = columns["jwks_uri"]
        if "base_url" in columns:
            idp.connector_settings = idp.connector_settings | {"base_url": columns["base_url"]}
        if "token_endpoint" in columns:
            integrations.find(session, "crm").token_endpoint = columns["token_endpoint"]


def exchange(flask_app: Flask, idp: IdentityProviderServer) -> Any:
    form = {
        "grant_type": GRANT,
        "subject_token": idp.access_token("00u1"),
        "subject_token_type": ACCESS,
        "audience": "crm",
    }
    return flask_app.test_client().post(
        "/t/acme/oauth/token", data=form, headers=basic("broker", BROKER_SECRET)
    )


@pytest.mark.parametrize("template", POINTED)
def test_a_jwks_uri_pointing_inside_is_not_fetched(strict_app, idp, counting, template):
    seed(strict_app, idp)
    store(strict_app, jwks_uri=template.format(port=counting.port))
    response = exchange(strict_app, idp)
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert counting.connections == 0


@pytest.mark.parametrize("template", POINTED)
def test_an_upstream_token_endpoint_pointing_inside_is_not_called(
    strict_app, public_loopback, idp, counting, template
):
    seed(strict_app, idp)
    store(strict_app, token_endpoint=template.format(port=counting.port) + "oauth/token")
    response = exchange(strict_app, idp)
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert idp.fetches == 1  # the subject token was checked: the refusal is the upstream's
    assert counting.connections == 0


@pytest.mark.parametrize("template", POINTED)
def test_a_connector_base_url_pointing_inside_is_not_called(strict_app, counting, template):
    config = {
        "issuer": "https://idp.acme.example",
        "jwks_uri": "https://idp.acme.example/keys",
        "connector": "okta",
        "connector_settings": {"base_url": "https://acme.okta.example"},
        "connector_secret": remember_secret("okta-api-token-" + "t" * 24),
    }
    tenant = make_tenant(strict_app, idp=config)
    add_user(strict_app, "acme", "00u1", "ada@example.com")
    store(strict_app, base_url=template.format(port=counting.port).rstrip("/"))
    response = signed(strict_app.test_client(), tenant, "delete", {"id": "00u1"})
    assert response.status_code == 503
    assert counting.connections == 0
