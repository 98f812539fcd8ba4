"""An operator who sets a URL idbridge will call (identity provider ``issuer``/``jwks_uri``,
connector ``base_url``, integration ``token_endpoint``) to a literal loopback, private or
link-local host, or ``localhost``, is told so by the surface's own validation error, naming the
field, unless ``IDBRIDGE_ALLOW_PRIVATE_URLS`` is on: ``idbridge apply`` fails with file, line
and field and applies nothing; the admin API answers 422. An ambiguous URL is refused whatever
the setting. URLs idbridge never calls (logout redirects, the password reset page) are not
judged this way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select

from app import create_app, operator_file, runtime
from app.cli import main
from app.database import Database
from app.models import Tenant
from app.settings import Settings
from tests.conftest import empty_tables, make_settings

HINT = "set IDBRIDGE_ALLOW_PRIVATE_URLS to allow it"
FILE = """\
tenants:
  - slug: acme
    oidc: {logout_redirect_uris: ["http://127.0.0.1:3000/bye"]}
    mail: {password_reset_url: "http://localhost:3000/reset"}
    idp:
      issuer: https://idp.acme.example
      jwks_uri: https://idp.acme.example/keys
      connector: okta
      connector_settings: {base_url: "https://acme.okta.example"}
    integrations:
      - name: crm
        kind: rfc8693
        flow: brokered
        token_endpoint: https://crm.example/token
"""
# (what the file says instead, the line, the field, the sentence)
PRIVATE = [
    (
        "jwks_uri: http://127.0.0.1:8080/keys",
        7,
        "tenants[0].idp.jwks_uri",
        f"127.0.0.1 is a loopback address; {HINT}",
    ),
    (
        "issuer: http://localhost:8080/realms/acme",
        6,
        "tenants[0].idp.issuer",
        f"localhost is a loopback host name; {HINT}",
    ),
    (
        'connector_settings: {base_url: "http://169.254.169.254"}',
        9,
        "tenants[0].idp.connector_settings.base_url",
        f"169.254.169.254 is a link-local address; {HINT}",
    ),
    (
        "token_endpoint: https://10.1.2.3/token",
        14,
        "tenants[0].integrations[0].token_endpoint",
        f"10.1.2.3 is a private address; {HINT}",
    ),
    (
        'jwks_uri: "http://[::1]:8080/keys"',
        7,
        "tenants[0].idp.jwks_uri",
        f"::1 is a loopback address; {HINT}",
    ),
]


def written(tmp_path: Path, replacement: str | None = None) -> Path:
    text = FILE
    if replacement is not None:
        key = replacement.split(":")[0]
        (line,) = [line for line in FILE.splitlines() if line.strip().startswith(key + ":")]
        text = FILE.replace(line, line[: len(line) - len(line.lstrip())] + replacement)
    path = tmp_path / "idbridge.yaml"
    path.write_text(text)
    return path


def tenants_in(db: Database) -> int:
    with db.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(Tenant.__table__)) or 0


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings)
    empty_tables(database)
    yield database
    database.dispose()


@pytest.mark.parametrize(("replacement", "line", "field", "sentence"), PRIVATE)
def test_apply_refuses_a_private_host_naming_file_line_and_field(
    settings, db, tmp_path, replacement, line, field, sentence
):
    path = written(tmp_path, replacement)
    strict = make_settings(tmp_path, database_url=settings.database_url, allow_private_urls=False)
    with pytest.raises(operator_file.FileError) as refused:
        operator_file.apply(strict, db, path, {})
    assert str(refused.value) == f"{path} line {line}: {field}: {sentence}"
    assert tenants_in(db) == 0
    operator_file.apply(settings, db, path, {})  # allowed: the same file applies
    assert tenants_in(db) == 1


def test_apply_on_the_command_line_exits_1_and_applies_nothing(settings, db, tmp_path):
    path = written(tmp_path, PRIVATE[0][0])
    env = {
        "IDBRIDGE_DATABASE_URL": settings.database_url,
        "IDBRIDGE_SECRET_KEY": settings.secret_key,
        "IDBRIDGE_INSTANCE_PATH": str(tmp_path / "instance"),
        "IDBRIDGE_ALLOW_PRIVATE_URLS": "false",
    }
    result = CliRunner().invoke(main, ["apply", "-f", str(path)], env=env)
    assert result.exit_code == 1
    assert f"{path} line 7: tenants[0].idp.jwks_uri: 127.0.0.1 is a loopback address" in (
        result.stderr
    )
    assert "nothing was applied" in result.stderr
    assert tenants_in(db) == 0
    allowed = CliRunner().invoke(
        main, ["apply", "-f", str(path)], env=env | {"IDBRIDGE_ALLOW_PRIVATE_URLS": "true"}
    )
    assert allowed.exit_code == 0, allowed.output
    assert tenants_in(db) == 1


def test_apply_with_public_outbound_urls_accepts_loopback_redirects(settings, db, tmp_path):
    strict = make_settings(tmp_path, database_url=settings.database_url, allow_private_urls=False)
    operator_file.apply(strict, db, written(tmp_path), {})
    assert tenants_in(db) == 1


@pytest.mark.parametrize("allow_private", [False, True])
def test_apply_refuses_an_ambiguous_url_whatever_the_setting(settings, db, tmp_path, allow_private):
    path = written(tmp_path, "jwks_uri: 'https://127.0.0.1:1\\@idp.acme.example/keys'")
    chosen = make_settings(
        tmp_path, database_url=settings.database_url, allow_private_urls=allow_private
    )
    with pytest.raises(operator_file.FileError) as refused:
        operator_file.apply(chosen, db, path, {})
    assert str(refused.value) == (
        f"{path} line 7: tenants[0].idp.jwks_uri: must not contain a backslash before the path"
    )


# --- the admin API --------------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["strict", "allowed"])
def admin_app(request, tmp_path, database_url) -> Iterator[Flask]:
    settings = make_settings(tmp_path, database_url=database_url, allow_private_urls=request.param)
    flask_app = create_app(settings)
    empty_tables(runtime.of(flask_app).db)
    yield flask_app
    runtime.of(flask_app).db.dispose()


IDP = {
    "issuer": "https://idp.acme.example",
    "jwks_uri": "https://idp.acme.example/keys",
    "connector": "okta",
    "connector_settings": {"base_url": "https://acme.okta.example"},
}
CRM = {"name": "crm", "kind": "rfc8693", "flow": "brokered", "token_endpoint": "https://x.example"}


def test_the_admin_api_refuses_private_hosts_unless_allowed(admin_app, admin_headers):
    client = admin_app.test_client()
    strict = not runtime.of(admin_app).settings.allow_private_urls
    tenants = "/admin/v1/tenants"
    cases = [
        ({"idp": IDP | {"jwks_uri": "http://127.0.0.1:8080/keys"}}, ["idp", "jwks_uri"], 0),
        ({"idp": IDP | {"issuer": "http://localhost:8080/acme"}}, ["idp", "issuer"], 1),
        (
            {"idp": IDP | {"connector_settings": {"base_url": "http://169.254.169.254"}}},
            ["idp", "connector_settings", "base_url"],
            2,
        ),
    ]
    for index, (body, where, case) in enumerate(cases):
        response = client.post(tenants, json={"slug": f"t{index}"} | body, headers=admin_headers)
        if not strict:
            assert response.status_code == 201, response.get_json()
            continue
        assert response.status_code == 422
        errors = response.get_json()["errors"]["json"]
        for key in where:
            errors = errors[key]
        assert errors == [PRIVATE[case][3]]
        assert client.get(f"{tenants}/t{index}", headers=admin_headers).status_code == 404


def test_the_admin_api_refuses_a_private_token_endpoint_unless_allowed(admin_app, admin_headers):
    client = admin_app.test_client()
    strict = not runtime.of(admin_app).settings.allow_private_urls
    base = "/admin/v1/tenants/acme/integrations"
    assert (
        client.post("/admin/v1/tenants", json={"slug": "acme"}, headers=admin_headers).status_code
        == 201
    )
    private = CRM | {"token_endpoint": "https://10.1.2.3/token"}
    created = client.post(base, json=private, headers=admin_headers)
    assert created.status_code == (422 if strict else 201)
    if strict:
        assert created.get_json()["errors"]["json"] == {"token_endpoint": [PRIVATE[3][3]]}
        assert client.post(base, json=CRM, headers=admin_headers).status_code == 201
    changed = client.patch(
        f"{base}/crm", json={"token_endpoint": "https://10.1.2.3/token"}, headers=admin_headers
    )
    assert changed.status_code == (422 if strict else 200)
    stored = client.get(f"{base}/crm", headers=admin_headers).get_json()["token_endpoint"]
    assert stored == (CRM["token_endpoint"] if strict else "https://10.1.2.3/token")


def test_the_admin_api_refuses_an_ambiguous_url_and_not_a_loopback_redirect(
    admin_app, admin_headers
):
    client = admin_app.test_client()
    ambiguous = IDP | {"jwks_uri": "http://user@idp.acme.example/keys"}
    response = client.post(
        "/admin/v1/tenants", json={"slug": "acme", "idp": ambiguous}, headers=admin_headers
    )
    assert response.status_code == 422
    assert response.get_json()["errors"]["json"]["idp"]["jwks_uri"] == [
        "must not contain user information (user@host)"
    ]
    not_called = {
        "slug": "acme",
        "idp": IDP,
        "oidc": {"logout_redirect_uris": ["http://127.0.0.1:3000/bye"]},
        "mail": {"password_reset_url": "http://localhost:3000/reset"},
    }
    response = client.post("/admin/v1/tenants", json=not_called, headers=admin_headers)
    assert response.status_code == 201
