"""The committed OpenAPI document: it is what the code serves, and the code does what it says.

Schemathesis drives every documented operation in-process (WSGI) with the operator token, on
each backend, and checks every answer against the document: no 5xx, only documented status
codes and content types, bodies that match their schema. The path examples (`acme`,
`broker`, `snowflake-prod`) name rows seeded before each call, so generated requests reach
real tenants as well as unknown ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from flask import Flask
from flask_smorest import Blueprint
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from admin import schemas
from app import api, clients, create_app, integrations, runtime, tenants
from app.errors import NotFound
from tests.conftest import make_settings, remember_secret

OPENAPI_YAML = Path(__file__).resolve().parent.parent / "openapi.yaml"
REGENERATE = ".venv/bin/python -m app.api -o openapi.yaml"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SEEDED = {  # the rows `ensure_examples` keeps in place, by path parameter
    "slug": "acme",
    "client_id": "broker",
    "name": "snowflake-prod",
    "integration": "snowflake-prod",
}
SECRET_KEYS = ("secret", "client_secret", "token", "connector_secret")


def test_the_committed_document_is_the_generated_one(tmp_path):
    generated = api.to_yaml(create_app(make_settings(tmp_path)))
    committed = OPENAPI_YAML.read_text() if OPENAPI_YAML.exists() else ""
    assert generated == committed, (
        f"openapi.yaml is out of date with the code: regenerate it with `{REGENERATE}` "
        "and review the diff (it is the public contract)"
    )


def test_the_served_document_is_the_committed_one(client):
    assert client.get("/openapi.json").get_json() == yaml.safe_load(OPENAPI_YAML.read_text())


def test_two_apps_in_one_process_serve_their_own_api(tmp_path, database_url):
    first = create_app(make_settings(tmp_path / "a", database_url=database_url))
    second = create_app(
        make_settings(tmp_path / "b", database_url=database_url, admin_token="b" * 40)
    )
    assert api.of(first) is not api.of(second)
    extra = Blueprint("extra", __name__, url_prefix="/extra")
    extra.route("/ping")(lambda: {"pong": True})
    api.of(second).register_blueprint(extra)

    served = {
        name: flask_app.test_client().get("/openapi.json").get_json()["paths"]
        for name, flask_app in (("first", first), ("second", second))
    }
    assert "/admin/v1/tenants" in served["first"] and "/admin/v1/tenants" in served["second"]
    assert "/extra/ping" in served["second"] and "/extra/ping" not in served["first"]
    assert first.test_client().get("/extra/ping").status_code == 404
    # each app checks its own operator token
    other_token = {"Authorization": "Bearer " + "b" * 40}
    assert second.test_client().get("/admin/v1/tenants", headers=other_token).status_code == 200
    assert first.test_client().get("/admin/v1/tenants", headers=other_token).status_code == 401
    for flask_app in (first, second):
        runtime.of(flask_app).db.dispose()


# --- schemathesis -----------------------------------------------------------------------


def ensure_examples(flask_app: Flask) -> None:
    """The rows the document's path examples name; recreated when a test deleted them."""
    rt = runtime.of(flask_app)
    with rt.db.transaction() as session:
        try:
            tenant = tenants.find(session, "acme")
        except NotFound:
            tenant = tenants.create(
                session, rt.keyring, schemas.TenantCreate().load({"slug": "acme"})
            )
        try:
            integration = integrations.find(session, "snowflake-prod")
        except NotFound:
            integration = integrations.create(
                session,
                rt.keyring,
                tenant,
                schemas.IntegrationCreate().load(
                    {
                        "name": "snowflake-prod",
                        "kind": "snowflake",
                        "audience": "https://sf.example",
                    }
                ),
            )
        try:
            client = clients.find(session, "broker")
        except NotFound:
            client, _ = clients.create(
                session,
                rt.keyring,
                tenant,
                schemas.ClientCreate().load({"client_id": "broker"}),
                secret=remember_secret("broker-secret-" + "x" * 32),
            )
        integrations.grant(session, client, integration)


def _remember_secrets(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in SECRET_KEYS and isinstance(item, str):
                remember_secret(item)
            else:
                _remember_secrets(item)
    elif isinstance(value, list):
        for item in value:
            _remember_secrets(item)


# The committed document, which the tests above prove is the one the code serves.
schema = schemathesis.openapi.from_path(OPENAPI_YAML)


def answers_as_documented(case, app, admin_headers) -> None:
    ensure_examples(app)
    _remember_secrets(case.body)
    response = case.call_and_validate(app=app, headers=admin_headers, checks=CHECKS)
    if response.headers.get("Content-Type", [""])[0].startswith("application/json"):
        _remember_secrets(json.loads(response.content or b"null"))


BOUNDED = {
    "max_examples": 15,
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "derandomize": True,
    "database": None,
}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@schema.parametrize()
@settings(**BOUNDED)
def test_every_operation_answers_as_documented(case, app, admin_headers):
    """Every phase: the document's examples, schemathesis' coverage cases (each constraint
    at and past its edge, missing and wrong auth, unsupported methods), then generated cases."""
    answers_as_documented(case, app, admin_headers)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@schema.parametrize()
@settings(**BOUNDED, phases=[Phase.generate])
def test_every_operation_answers_as_documented_on_postgresql(case, app, admin_headers):
    """Generated cases only, aimed at the seeded rows: what differs on PostgreSQL is how the
    values are stored, not which edges the document has (those run above, on SQLite)."""
    for name in case.path_parameters or {}:
        case.path_parameters[name] = SEEDED.get(name, case.path_parameters[name])
    answers_as_documented(case, app, admin_headers)
