"""The operator token, and the one error shape every ``/admin/v1`` answer uses."""

from __future__ import annotations

import re

import pytest

from app import api, create_app, runtime, tenants
from app.errors import StoreUnavailable
from tests.conftest import make_settings, remember_secret

CHALLENGE = 'Bearer realm="idbridge-admin"'
EXAMPLES = {
    "slug": "acme",
    "client_id": "broker",
    "name": "sf",
    "integration": "sf",
    "secret_id": "whk_0123456789abcdef",
    "token_id": "sct_0123456789abcdef",
    "user_id": "00u1",
    "subject": "00u1",
}


def every_operation(flask_app) -> list[tuple[str, str]]:
    """(method, concrete path) of every documented admin operation."""
    paths = api.of(flask_app).spec.to_dict()["paths"]
    operations = []
    for template, item in paths.items():
        if not template.startswith("/admin/v1/"):
            continue
        path = re.sub(r"\{([^}]+)\}", lambda match: EXAMPLES[match[1]], template)
        operations += [(method.upper(), path) for method in item if method != "parameters"]
    return operations


def test_the_admin_api_documents_all_its_operations(app):
    operations = every_operation(app)
    assert len(operations) == 35
    assert ("POST", "/admin/v1/tenants/acme/clients/broker/secret") in operations


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token-of-the-right-kind-0000000000", "Basic Zm9vOmJhcg=="],
)
def test_every_operation_refuses_a_missing_or_wrong_token(app, client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in every_operation(app):
        response = client.open(path, method=method, headers=headers, json={})
        assert response.status_code == 401, (method, path)
        assert response.headers["WWW-Authenticate"].startswith(CHALLENGE)
        assert response.get_json()["code"] == 401
        assert response.get_json()["status"] == "Unauthorized"


def test_a_wrong_token_is_told_invalid_token(client):
    response = client.get("/admin/v1/tenants", headers={"Authorization": "Bearer " + "z" * 40})
    assert response.headers["WWW-Authenticate"] == CHALLENGE + ', error="invalid_token"'
    missing = client.get("/admin/v1/tenants")
    assert missing.headers["WWW-Authenticate"] == CHALLENGE


def test_the_token_is_checked_before_the_body_is_read(client):
    response = client.post("/admin/v1/tenants", data="{not json", content_type="application/json")
    assert response.status_code == 401


def test_the_scheme_name_is_case_insensitive(client, admin_headers):
    token = admin_headers["Authorization"].split(" ", 1)[1]
    assert (
        client.get("/admin/v1/tenants", headers={"Authorization": f"bearer {token}"}).status_code
        == 200
    )


def test_without_a_configured_token_the_admin_api_refuses_every_call(tmp_path, database_url):
    flask_app = create_app(make_settings(tmp_path, database_url=database_url, admin_token=""))
    client = flask_app.test_client()
    try:
        for authorization in ("Bearer ", "Bearer " + "a" * 40, ""):
            response = client.get("/admin/v1/tenants", headers={"Authorization": authorization})
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith(CHALLENGE)
        for method, path in every_operation(flask_app):
            assert client.open(path, method=method, json={}).status_code == 401
    finally:
        runtime.of(flask_app).db.dispose()


# --- the error shape ------------------------------------------------------------------------


def test_malformed_json_is_a_400_not_a_500(client, admin_headers):
    client.post("/admin/v1/tenants", json={"slug": "acme"}, headers=admin_headers)
    for method, path in (
        ("POST", "/admin/v1/tenants"),
        ("PATCH", "/admin/v1/tenants/acme"),
        ("POST", "/admin/v1/tenants/acme/clients"),
        ("POST", "/admin/v1/tenants/acme/webhook-secrets"),
    ):
        response = client.open(
            path,
            method=method,
            data='{"slug": "acme",',
            content_type="application/json",
            headers=admin_headers,
        )
        assert response.status_code == 400, (method, path)
        assert response.get_json() == {
            "code": 400,
            "status": "Bad Request",
            "errors": {"json": ["Invalid JSON body."]},
        }


def test_an_unknown_field_is_a_422_naming_it(client, admin_headers):
    response = client.post(
        "/admin/v1/tenants", json={"slug": "acme", "colour": "blue"}, headers=admin_headers
    )
    assert response.status_code == 422
    assert response.get_json() == {
        "code": 422,
        "status": "Unprocessable Entity",
        "errors": {"json": {"colour": ["Unknown field."]}},
    }


def test_a_wrong_type_is_a_422_naming_the_field(client, admin_headers):
    response = client.post(
        "/admin/v1/tenants",
        json={"slug": "acme", "display_name": 5, "users": {"customer_required": "maybe"}},
        headers=admin_headers,
    )
    assert response.status_code == 422
    errors = response.get_json()["errors"]["json"]
    assert set(errors) == {"display_name", "users"}
    assert set(errors["users"]) == {"customer_required"}


def test_a_body_that_is_not_an_object_is_a_422(client, admin_headers):
    for body in ([], "acme", 3, None):
        response = client.post("/admin/v1/tenants", json=body, headers=admin_headers)
        assert response.status_code == 422, body


def test_a_bad_query_parameter_is_a_422_naming_it(client, admin_headers):
    response = client.get("/admin/v1/tenants?limit=501", headers=admin_headers)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]["query"]) == {"limit"}


def test_domain_errors_have_the_same_shape(client, admin_headers):
    missing = client.get("/admin/v1/tenants/nope", headers=admin_headers)
    assert missing.status_code == 404
    assert missing.get_json() == {
        "code": 404,
        "status": "Not Found",
        "message": "tenant 'nope' does not exist",
    }
    client.post("/admin/v1/tenants", json={"slug": "acme"}, headers=admin_headers)
    again = client.post("/admin/v1/tenants", json={"slug": "acme"}, headers=admin_headers)
    assert again.status_code == 409
    assert again.get_json() == {
        "code": 409,
        "status": "Conflict",
        "message": "tenant 'acme' already exists",
        "errors": {"json": {"slug": ["tenant 'acme' already exists"]}},
    }


def test_an_unavailable_store_is_a_503_with_retry_after(client, admin_headers, monkeypatch):
    def unavailable(*_args, **_kwargs):
        raise StoreUnavailable("the database is unavailable, try again shortly")

    monkeypatch.setattr(tenants, "find", unavailable)
    response = client.get("/admin/v1/tenants/acme", headers=admin_headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert response.get_json() == {
        "code": 503,
        "status": "Service Unavailable",
        "message": "the database is unavailable, try again shortly",
    }


# --- values the store cannot keep are refused, on every backend ------------------------------


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"slug": "acme", "display_name": "a\x00b"},
            {"display_name": ["must not contain NUL characters"]},
        ),
        (
            {"slug": "acme", "oidc": {"logout_redirect_uris": ["https://a.example/\x00"]}},
            {"oidc": {"logout_redirect_uris": {"0": ["must not contain NUL characters"]}}},
        ),
        (
            {
                "slug": "acme",
                "idp": {
                    "issuer": "https://i.example/" + "a" * 2000,
                    "jwks_uri": "https://i.example/k",
                },
            },
            {"idp": {"issuer": ["must be at most 2000 characters"]}},
        ),
        (
            {"slug": "acme", "idp": {"issuer": "http://[", "jwks_uri": "https://i.example/k"}},
            {"idp": {"issuer": ["must have a well-formed [IPv6] host"]}},
        ),
    ],
)
def test_values_no_store_can_keep_are_a_422_naming_the_field(client, admin_headers, body, errors):
    response = client.post("/admin/v1/tenants", json=body, headers=admin_headers)
    assert response.status_code == 422
    assert response.get_json()["errors"]["json"] == errors


def test_unpaired_surrogates_and_nan_are_a_422(client, admin_headers):
    client.post("/admin/v1/tenants", json={"slug": "acme"}, headers=admin_headers)
    surrogate = client.patch(
        "/admin/v1/tenants/acme",
        data='{"display_name": "\\ud800"}',
        content_type="application/json",
        headers=admin_headers,
    )
    assert surrogate.status_code == 422
    assert set(surrogate.get_json()["errors"]["json"]) == {"display_name"}
    nan = client.post(
        "/admin/v1/tenants/acme/integrations",
        data='{"name": "sf", "kind": "snowflake", "audience": "https://sf.example",'
        ' "settings": {"ratio": NaN}}',
        content_type="application/json",
        headers=admin_headers,
    )
    assert nan.status_code == 422
    assert nan.get_json()["errors"]["json"] == {"settings": {"ratio": ["must be a finite number"]}}


def test_secrets_given_in_a_refused_body_are_not_echoed(client, admin_headers):
    secret = remember_secret("connector-secret-" + "s" * 20)
    response = client.post(
        "/admin/v1/tenants",
        json={
            "slug": "acme",
            "idp": {"issuer": "nope", "jwks_uri": "nope", "connector_secret": secret},
        },
        headers=admin_headers,
    )
    assert response.status_code == 422
    assert secret not in response.get_data(as_text=True)
