"""Upstream exchanges (issue 7): idbridge as a client of the upstream's authorization server.

A second idbridge, served on loopback with its own database and configured through its admin
API, is the upstream RFC 8693 server: tenant ``crm-b`` trusts the test IdP (brokered flow),
tenant ``crm-f`` trusts the first instance's issuer (federated flow). A fake Salesforce token
endpoint checks the documented request form and produces the upstream faults. Then the circuit
breaker opening and closing, the negative cache, delegation and impersonation.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from flask import Flask

from app import clients, integrations, migrate, runtime, tenants
from app.database import Database
from app.models import User
from app.schemas import ClientSchema, IntegrationSchema, TenantSchema
from app.settings import Settings
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, remember_secret
from tests.fake_salesforce import FakeSalesforce
from tests.idp import IdentityProviderServer
from tests.test_exchange import Live, _serve

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
CRM = "https://crm.example"
BROKER_SECRET = remember_secret("cs_broker-secret-" + "u" * 32)
UPSTREAM_SECRET = remember_secret("cs_upstream-secret-" + "x" * 32)
SALESFORCE_SECRET = remember_secret("sf_consumer-secret-" + "s" * 32)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def idp() -> Iterator[IdentityProviderServer]:
    with IdentityProviderServer() as server:
        yield server


@pytest.fixture
def first(tmp_path, database_url) -> Iterator[Live]:
    yield from _serve(tmp_path / "first", database_url)


@pytest.fixture
def upstream(tmp_path) -> Iterator[Live]:
    """The second idbridge, with a database of its own."""
    url = f"sqlite:///{tmp_path / 'upstream.db'}"
    db = Database(
        Settings.load(environ={}, overrides={"database_url": url, "secret_key": SECRET_KEY})
    )
    migrate.upgrade(db)
    db.dispose()
    yield from _serve(tmp_path / "upstream", url)


@pytest.fixture
def salesforce() -> Iterator[FakeSalesforce]:
    with FakeSalesforce() as server:
        yield server


def admin(live: Live, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.request(
        method, f"{live.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=10
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def add_users(flask_app: Flask, slug: str, *subjects: str) -> None:
    rt = runtime.of(flask_app)
    with rt.db.transaction() as session:
        tenants.find(session, slug)
        for subject in subjects:
            email = f"{subject}@example.com"
            session.add(
                User(
                    scim_id=f"scim-{subject}",
                    subject=subject,
                    user_name=email,
                    user_name_canonical=email,
                    customer=f"C-{subject}",
                    email=email,
                    email_canonical=email,
                )
            )


def configure_upstream(
    upstream: Live, slug: str, idp_settings: dict[str, Any], client: dict
) -> None:
    """An upstream tenant issuing RFC 9068 tokens for ``https://crm.example`` to idbridge's
    client there, which may delegate; user 00u1 exists, 00u2 does not."""
    admin(upstream, "POST", "/tenants", {"slug": slug, "idp": idp_settings})
    admin(
        upstream,
        "POST",
        f"/tenants/{slug}/integrations",
        {
            "name": "crm-api",
            "kind": "jwt",
            "audience": CRM,
            "user_mapping": {"source": "subject"},
            "token_lifetime": 900,
        },
    )
    client = {"audiences": ["crm-api"], "scopes": ["crm.read"], "may_delegate": True} | client
    admin(upstream, "POST", f"/tenants/{slug}/clients", client)
    grant = {"client_id": client["client_id"], "integration": "crm-api"}
    admin(upstream, "POST", f"/tenants/{slug}/grants", grant)
    add_users(upstream.app, slug, "00u1")


def seed_first(first: Live, idp: IdentityProviderServer, *remote: dict[str, Any]) -> None:
    """Tenant acme trusting the IdP, users 00u1 and 00u2, the broker (may impersonate and
    delegate) granted each of the ``remote`` integrations."""
    rt = runtime.of(first.app)
    with rt.db.transaction() as session:
        tenant = tenants.create(
            session, rt.keyring, TenantSchema().load({"slug": "acme", "idp": idp.settings()})
        )
    add_users(first.app, "acme", "00u1", "00u2")
    with rt.db.transaction() as session:
        tenant = tenants.find(session, "acme")
        rows = []
        for data in remote:
            secret = data.pop("client_secret", None)
            row = integrations.create(session, rt.keyring, tenant, IntegrationSchema().load(data))
            if secret:
                integrations.update(rt.keyring, tenant, row, {"client_secret": secret})
            rows.append(row)
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
                    "may_delegate": True,
                }
            ),
            secret=BROKER_SECRET,
        )
        for row in rows:
            integrations.grant(session, broker, row)


def set_client(first: Live, **values: Any) -> None:
    with runtime.of(first.app).db.transaction() as session:
        tenants.find(session, "acme")
        client = clients.find(session, "broker")
        for name, value in values.items():
            setattr(client, name, value)


def exchange(first: Live, subject_token: str, audience: str, **extra: Any) -> requests.Response:
    raw = base64.b64encode(f"broker:{BROKER_SECRET}".encode()).decode()
    form = {
        "grant_type": GRANT,
        "subject_token": subject_token,
        "subject_token_type": ACCESS,
        "audience": audience,
    } | extra
    return requests.post(
        f"{first.url}/t/acme/oauth/token",
        data=form,
        headers={"Authorization": f"Basic {raw}"},
        timeout=30,
    )


def upstream_claims(upstream: Live, slug: str, token: str) -> dict[str, Any]:
    """The upstream's token, verified with the upstream tenant's published keys."""
    keys = requests.get(f"{upstream.url}/t/{slug}/jwks.json", timeout=10).json()
    header = jwt.get_unverified_header(token)
    (key,) = [jwt.PyJWK(k) for k in keys["keys"] if k["kid"] == header["kid"]]
    return jwt.decode(token, key.key, algorithms=[header["alg"]], audience=CRM)


def audit(first: Live) -> list[dict[str, Any]]:
    response = requests.get(f"{first.url}/admin/v1/tenants/acme/audit", headers=ADMIN, timeout=10)
    return response.json()["items"]


# --- rfc8693, brokered ----------------------------------------------------------------------


@pytest.fixture
def brokered(first, upstream, idp) -> tuple[Live, Live]:
    """The upstream trusts the IdP; idbridge authenticates there as the broker's registration
    (the upstream sees the same parties as the IdP), by ``client_secret_basic``."""
    configure_upstream(
        upstream, "crm-b", idp.settings(), {"client_id": "broker", "secret": UPSTREAM_SECRET}
    )
    seed_first(
        first,
        idp,
        {
            "name": "crm",
            "kind": "rfc8693",
            "flow": "brokered",
            "token_endpoint": f"{upstream.url}/t/crm-b/oauth/token",
            "client_id": "broker",
            "client_secret": UPSTREAM_SECRET,
            "audience": CRM,
            "scope_mapping": {"read": "crm.read"},
            "user_mapping": {"source": "subject"},
        },
    )
    return first, upstream


def test_brokered_returns_the_upstreams_token_for_the_user(brokered, idp):
    first, upstream = brokered
    response = exchange(first, idp.access_token("00u1"), "crm", scope="read")
    assert response.status_code == 200, response.text
    body = response.json()
    claims = upstream_claims(upstream, "crm-b", remember_secret(body["access_token"]))
    assert (claims["iss"], claims["sub"], claims["scope"]) == (
        f"{upstream.url}/t/crm-b",
        "00u1",
        "crm.read",
    )
    assert "act" not in claims
    assert 0 < body["expires_in"] <= 900
    assert body["issued_token_type"] == ACCESS
    (event,) = audit(first)
    assert (event["outcome"], event["reason"], event["actors"]) == ("success", "impersonation", [])


def test_brokered_delegation_forwards_the_actor_and_the_upstream_names_it(brokered, idp):
    first, upstream = brokered
    subject = idp.access_token("00u1", act={"sub": "earlier-svc"})
    actor = idp.access_token("svc", client_id="broker")
    response = exchange(first, subject, "crm", actor_token=actor, actor_token_type=ACCESS)
    assert response.status_code == 200, response.text
    claims = upstream_claims(upstream, "crm-b", remember_secret(response.json()["access_token"]))
    assert claims["sub"] == "00u1"
    assert claims["act"] == {"sub": "broker", "act": {"sub": "earlier-svc"}}
    assert audit(first)[0]["actors"] == ["earlier-svc", "broker"]


def test_an_upstream_no_such_user_is_user_not_provisioned_and_briefly_cached(brokered, idp):
    first, upstream = brokered
    for _ in range(2):
        response = exchange(first, idp.access_token("00u2"), "crm")
        assert response.status_code == 400
        assert response.json() == {
            "error": "user_not_provisioned",
            "error_description": "the user has no identity in integration 'crm'",
            "integration": "crm",
            "retryable": False,
        }
    upstream_audit = requests.get(
        f"{upstream.url}/admin/v1/tenants/crm-b/audit", headers=ADMIN, timeout=10
    ).json()["items"]
    # one upstream call: the second answer came from the negative cache
    assert [e["error_code"] for e in upstream_audit] == ["user_not_provisioned"]


def test_another_upstream_refusal_is_invalid_grant_naming_the_integration(first, upstream, idp):
    configure_upstream(
        upstream, "crm-b", idp.settings(), {"client_id": "broker", "secret": UPSTREAM_SECRET}
    )
    wrong = remember_secret("cs_wrong-upstream-secret-" + "w" * 32)
    seed_first(
        first,
        idp,
        {
            "name": "crm",
            "kind": "rfc8693",
            "flow": "brokered",
            "token_endpoint": f"{upstream.url}/t/crm-b/oauth/token",
            "client_id": "broker",
            "client_secret": wrong,
            "audience": CRM,
            "user_mapping": {"source": "subject"},
            "settings": {"client_auth": "client_secret_post"},
        },
    )
    response = exchange(first, idp.access_token("00u1"), "crm")
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "integration 'crm' refused the exchange (invalid_client)",
        "integration": "crm",
        "retryable": False,
    }


# --- rfc8693, federated ---------------------------------------------------------------------


@pytest.fixture
def federated(first, upstream, idp) -> tuple[Live, Live]:
    """The upstream trusts the first instance's issuer and knows idbridge's client by the
    tenant's published keys (``private_key_jwt``)."""
    issuer = f"{first.url}/t/acme"
    seed_first(
        first,
        idp,
        {
            "name": "crm",
            "kind": "rfc8693",
            "flow": "federated",
            "token_endpoint": f"{upstream.url}/t/crm-f/oauth/token",
            "client_id": "idbridge",
            "audience": CRM,
            "scope_mapping": {"read": "crm.read"},
            "user_mapping": {"source": "subject"},
            "settings": {"client_auth": "private_key_jwt"},
        },
    )
    admin(first, "POST", "/tenants/acme/signing-keys", {})
    jwks = requests.get(f"{issuer}/jwks.json", timeout=10).json()
    idp_settings = {"issuer": issuer, "jwks_uri": f"{issuer}/jwks.json", "audiences": [CRM]}
    configure_upstream(upstream, "crm-f", idp_settings, {"client_id": "idbridge", "jwks": jwks})
    return first, upstream


def test_federated_returns_the_upstreams_token_for_the_user(federated, idp):
    first, upstream = federated
    response = exchange(first, idp.access_token("00u1"), "crm", scope="read")
    assert response.status_code == 200, response.text
    claims = upstream_claims(upstream, "crm-f", remember_secret(response.json()["access_token"]))
    assert (claims["iss"], claims["sub"], claims["client_id"], claims["scope"]) == (
        f"{upstream.url}/t/crm-f",
        "00u1",
        "idbridge",
        "crm.read",
    )
    assert "act" not in claims


def test_federated_delegation_nests_the_chain_under_idbridge(federated, idp):
    first, upstream = federated
    subject = idp.access_token("00u1", act={"sub": "earlier-svc"}, may_act={"sub": "broker"})
    actor = idp.access_token("svc", client_id="broker")
    response = exchange(first, subject, "crm", actor_token=actor, actor_token_type=ACCESS)
    assert response.status_code == 200, response.text
    claims = upstream_claims(upstream, "crm-f", remember_secret(response.json()["access_token"]))
    assert claims["sub"] == "00u1"
    assert claims["act"] == {
        "sub": "idbridge",
        "act": {"sub": "broker", "act": {"sub": "earlier-svc"}},
    }


# --- impersonation and delegation rights (THREATS.md) ---------------------------------------


def test_impersonation_by_a_client_without_that_right_is_refused_and_audited(federated, idp):
    first, _ = federated
    set_client(first, may_impersonate=False)
    response = exchange(first, idp.access_token("00u1"), "crm")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "impersonation is not allowed" in response.json()["error_description"]
    (event,) = audit(first)
    assert event["outcome"] == "failure" and "impersonation is not allowed" in event["reason"]

    # delegation (an actor token naming the client) is the way without that right
    actor = idp.access_token("svc", client_id="broker")
    delegated = exchange(
        first, idp.access_token("00u1"), "crm", actor_token=actor, actor_token_type=ACCESS
    )
    assert delegated.status_code == 200, delegated.text


@pytest.mark.parametrize("case", ["may-act-excludes", "actor-is-another-client"])
def test_an_actor_other_than_the_client_never_reaches_the_upstream(federated, idp, case):
    first, _ = federated
    subject = idp.access_token("00u1")
    actor = idp.access_token("svc", client_id="broker")
    if case == "may-act-excludes":
        subject = idp.access_token("00u1", may_act={"sub": "someone-else"})
    else:
        actor = idp.access_token("svc", client_id="other")
    response = exchange(first, subject, "crm", actor_token=actor, actor_token_type=ACCESS)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


# --- Salesforce -----------------------------------------------------------------------------


def salesforce_integration(salesforce: FakeSalesforce, **settings: Any) -> dict[str, Any]:
    return {
        "name": "sf",
        "kind": "salesforce",
        "token_endpoint": salesforce.token_endpoint,
        "client_id": "3MVG9consumer-key",
        "client_secret": SALESFORCE_SECRET,
        "scope_mapping": {"api": ["api", "refresh_token"]},
        "user_mapping": {"source": "subject"},
        "token_lifetime": 1200,
        "settings": {"token_handler": "IdbridgeExchangeHandler"} | settings,
    }


def test_salesforce_gets_its_documented_request_and_the_broker_its_instance_url(
    first, idp, salesforce
):
    seed_first(first, idp, salesforce_integration(salesforce))
    subject = idp.access_token("00u1")
    response = exchange(first, subject, "sf", scope="api")
    assert response.status_code == 200, response.text
    (sent,) = salesforce.requests
    assert sent["content_type"] == "application/x-www-form-urlencoded"
    assert sent["authorization"] is None
    assert sent["form"] == {
        "grant_type": GRANT,
        "subject_token": subject,
        "subject_token_type": ACCESS,
        "client_id": "3MVG9consumer-key",
        "client_secret": SALESFORCE_SECRET,
        "scope": "api refresh_token",
        "token_handler": "IdbridgeExchangeHandler",
    }
    body = response.json()
    assert body["access_token"] == salesforce.issued[0]
    assert body["instance_url"] == "https://acme.my.salesforce.com"
    assert body["api_instance_url"] == "https://api.salesforce.com"
    assert (body["token_type"], body["issued_token_type"]) == ("Bearer", ACCESS)
    assert 1000 < body["expires_in"] <= 1200  # Salesforce says none: the integration's lifetime
    assert set(body) == {
        "access_token",
        "issued_token_type",
        "token_type",
        "expires_in",
        "instance_url",
        "api_instance_url",
    }
    cached = exchange(first, idp.access_token("00u1"), "sf", scope="api")
    assert cached.json() == body | {"expires_in": cached.json()["expires_in"]}
    assert len(salesforce.requests) == 1


@pytest.mark.parametrize(
    "mode", ["slow", "down", "html", "no_token", "negative"], ids=lambda mode: mode
)
def test_upstream_faults_are_temporarily_unavailable_and_nothing_is_cached(
    first, idp, salesforce, mode
):
    seed_first(first, idp, salesforce_integration(salesforce, timeout=0.5))
    salesforce.mode, salesforce.delay = mode, 2.0
    response = exchange(first, idp.access_token("00u1"), "sf")
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["Cache-Control"] == "no-store"
    assert SALESFORCE_SECRET not in response.text
    salesforce.mode = "ok"
    again = exchange(first, idp.access_token("00u1"), "sf")
    assert again.status_code == 200, again.text  # the failure was not cached
    assert again.json()["access_token"] == salesforce.issued[-1]


def test_salesforce_no_such_user_is_user_not_provisioned(first, idp, salesforce):
    seed_first(first, idp, salesforce_integration(salesforce))
    salesforce.mode = "no_user"
    response = exchange(first, idp.access_token("00u1"), "sf")
    assert response.status_code == 400
    assert response.json()["error"] == "user_not_provisioned"
    assert response.json()["integration"] == "sf"


def test_the_breaker_opens_after_repeated_failures_and_closes_again(first, idp, salesforce):
    seed_first(
        first, idp, salesforce_integration(salesforce, breaker_failures=2, breaker_cooldown=1)
    )
    salesforce.mode = "down"
    for _ in range(2):
        assert exchange(first, idp.access_token("00u1"), "sf").status_code == 503
    assert len(salesforce.requests) == 2
    refused = exchange(first, idp.access_token("00u1"), "sf")
    assert refused.status_code == 503
    assert "circuit open" in refused.json()["error_description"]
    assert len(salesforce.requests) == 2  # open: no upstream call

    salesforce.mode = "ok"
    for _ in range(100):  # bounded: the cool-down is 1 s
        response = exchange(first, idp.access_token("00u1"), "sf")
        if response.status_code == 200:
            break
        assert "circuit open" in response.json()["error_description"]
        time.sleep(0.05)
    assert response.status_code == 200, response.text
    assert len(salesforce.requests) == 3  # one probe, and it closed the breaker
    assert exchange(first, idp.access_token("00u2"), "sf").status_code == 200
    assert len(salesforce.requests) == 4


@pytest.mark.parametrize(
    "settings",
    [
        {"client_auth": "tls_client_auth"},
        {"breaker_failures": 0},
        {"timeout": 120},
        {"not_provisioned_patterns": ["(unclosed"]},
        {"not_provisioned_errors": "user_not_provisioned"},
    ],
    ids=["client-auth", "failures", "timeout", "pattern", "codes"],
)
def test_bad_upstream_settings_are_refused_when_written(first, settings):
    admin(first, "POST", "/tenants", {"slug": "acme"})
    response = requests.post(
        f"{first.url}/admin/v1/tenants/acme/integrations",
        json={
            "name": "crm",
            "kind": "rfc8693",
            "flow": "brokered",
            "token_endpoint": "https://upstream.example/oauth/token",
            "settings": settings,
        },
        headers=ADMIN,
        timeout=10,
    )
    assert response.status_code == 422, response.text  # the admin API's validation error
    assert list(response.json()["errors"]["json"]) == ["settings"]


def test_the_rfc8693_request_carries_the_integrations_target_and_basic_auth(first, idp, salesforce):
    secret = remember_secret("s3cret:with/odd+chars-" + "q" * 20)
    seed_first(
        first,
        idp,
        {
            "name": "crm",
            "kind": "rfc8693",
            "flow": "brokered",
            "token_endpoint": salesforce.token_endpoint,  # any RFC 8693 server will do
            "client_id": "idbridge@acme",
            "client_secret": secret,
            "audience": CRM,
            "resource": "https://crm.example/api",
            "scope_mapping": {"read": ["crm.read", "crm.list"]},
            "user_mapping": {"source": "subject"},
            "token_lifetime": 300,
            "settings": {"requested_token_type": "urn:ietf:params:oauth:token-type:jwt"},
        },
    )
    subject = idp.access_token("00u1")
    response = exchange(first, subject, "crm", scope="read")
    assert response.status_code == 200, response.text
    (sent,) = salesforce.requests
    assert sent["form"] == {
        "grant_type": GRANT,
        "subject_token": subject,
        "subject_token_type": ACCESS,
        "audience": CRM,
        "resource": "https://crm.example/api",
        "scope": "crm.read crm.list",
        "requested_token_type": "urn:ietf:params:oauth:token-type:jwt",
    }
    # RFC 6749 §2.3.1: client id and secret form-encoded, then base64
    expected = base64.b64encode(b"idbridge%40acme:s3cret%3Awith%2Fodd%2Bchars-" + b"q" * 20)
    assert sent["authorization"] == "Basic " + expected.decode()
    body = response.json()
    assert "instance_url" not in body  # passed through for Salesforce only
    assert 0 < body["expires_in"] <= 300
