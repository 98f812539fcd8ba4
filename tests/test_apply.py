"""``idbridge apply -f FILE`` (CONTRACT §5): the operator's YAML file, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from app import integrations, logs, operator_file, shared, tenants
from app.cli import main
from app.crypto import Keyring
from app.database import Database
from app.models import Base, Client, Grant, Tenant
from app.settings import Settings
from tests.conftest import captured_logs, empty_tables, remember_secret

DATA = Path(__file__).parent / "data"
CONTRACT = DATA / "contract.yaml"
TWO_TENANTS = DATA / "two_tenants.yaml"
ENV = {
    "ACME_WEBHOOK_SECRET": "whsec_" + base64.b64encode(os.urandom(32)).decode(),
    "ACME_SCIM_TOKEN": "scim_" + secrets.token_urlsafe(32),
    "ACME_BROKER_SECRET": "broker-" + secrets.token_urlsafe(32),
    "ACME_CRM_SECRET": "crm-" + secrets.token_urlsafe(24),
}
for _value in ENV.values():
    remember_secret(_value)
SHOWN_ONCE = re.compile(r"\(shown once\): (\S+)")


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    logs.configure(settings.log_level)  # as the service does: the leak check sees apply's lines
    database = Database(settings)
    shared.install(database, settings, Keyring(settings.secret_key))  # as the command line does
    empty_tables(database)
    yield database
    database.dispose()


def apply(
    settings: Settings, db: Database, path: Path, env: dict[str, str] | None = None
) -> list[str]:
    report = operator_file.apply(settings, db, path, ENV if env is None else env)
    text = report.render()
    for secret in SHOWN_ONCE.findall(text):
        remember_secret(secret)
    return text.splitlines()


def variant(tmp_path: Path, source: Path, *replacements: tuple[str, str]) -> Path:
    text = source.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / source.name
    path.write_text(text)
    return path


def fails(settings: Settings, db: Database, path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(operator_file.FileError) as error:
        operator_file.apply(settings, db, path, ENV if env is None else env)
    return str(error.value)


def all_cells(db: Database) -> str:
    with db.engine.connect() as connection:
        return "\n".join(
            str(tuple(row))
            for table in Base.metadata.sorted_tables
            for row in connection.execute(table.select())
        )


def count(db: Database, model: type) -> int:
    with db.engine.connect() as connection:
        return len(connection.execute(select(model.__table__)).all())


CONTRACT_LINES = [
    "tenant acme",
    "webhook secret acme/whk_",
    "SCIM token acme/sct_",
    "integration acme/snowflake-prod",
    "integration acme/crm",
    "client acme/broker",
    "grant acme/snowflake-prod -> broker",
    "grant acme/crm -> broker",
]


def test_contract_file_applies_as_is_then_reports_everything_unchanged(
    settings: Settings, db: Database
) -> None:
    first = apply(settings, db, CONTRACT)
    for line, expected in zip(first[:-1], CONTRACT_LINES, strict=True):
        assert line.startswith("created " + expected), line
    assert first[-1] == "8 created, 0 changed, 0 unchanged, 0 deleted"
    assert "shown once" not in "\n".join(first)  # every secret came from the environment

    second = apply(settings, db, CONTRACT)
    for line, expected in zip(second[:-1], CONTRACT_LINES, strict=True):
        assert line.startswith("unchanged " + expected), line
    assert second[-1] == "0 created, 0 changed, 8 unchanged, 0 deleted"

    keyring = Keyring(settings.secret_key)
    with db.read() as session:
        tenant = tenants.find(session, "acme")
        assert tenant.mail_from == "no-reply@acme.example"
        assert tenant.identity_provider is not None
        assert tenant.identity_provider.algorithms == ["RS256", "ES256"]
        broker = session.scalars(select(Client)).one()
        assert broker.scopes == ["session:role:ANALYST", "api"]
        assert keyring.token_matches(ENV["ACME_BROKER_SECRET"], broker.secret_hash or "")
        crm = integrations.find(session, "crm")
        context = integrations.client_secret_context(tenant, "crm")
        assert keyring.open(crm.client_secret_sealed or "", context) == ENV["ACME_CRM_SECRET"]
        assert len(integrations.list_grants(session)) == 2
    assert any("created client acme/broker" in line for line in captured_logs())


def test_secrets_are_stored_sealed_or_hashed_never_in_plain(
    settings: Settings, db: Database
) -> None:
    output = "\n".join(apply(settings, db, CONTRACT) + apply(settings, db, TWO_TENANTS))
    generated = SHOWN_ONCE.findall(output)
    assert len(generated) == 3  # globex's webhook secret, SCIM token and client secret
    cells = all_cells(db)
    for secret in [*ENV.values(), *generated]:
        assert secret not in cells
    logged = "\n".join(captured_logs())
    for secret in generated:
        assert secret not in logged


def test_changing_one_field_reports_exactly_that_change(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    apply(settings, db, CONTRACT)
    changed = variant(tmp_path, CONTRACT, ("token_lifetime: 600", "token_lifetime: 900"))
    lines = apply(settings, db, changed)
    assert "changed integration acme/snowflake-prod (token_lifetime)" in lines
    assert lines[-1] == "0 created, 1 changed, 7 unchanged, 0 deleted"

    rotated = dict(ENV, ACME_BROKER_SECRET=remember_secret("rotated-" + secrets.token_hex(20)))
    lines = apply(settings, db, changed, rotated)
    assert "changed client acme/broker (secret)" in lines
    assert lines[-1] == "0 created, 1 changed, 7 unchanged, 0 deleted"

    mail = variant(tmp_path, CONTRACT, ("no-reply@acme.example", "ops@acme.example"))
    lines = apply(settings, db, mail)
    assert "changed tenant acme (mail.from)" in lines
    assert "changed integration acme/snowflake-prod (token_lifetime)" in lines


def test_what_a_present_section_does_not_list_is_deleted(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    extra = variant(
        tmp_path,
        CONTRACT,
        (
            "    integrations:\n",
            "      - client_id: reporting\n        audiences: [crm]\n    integrations:\n",
        ),
        (
            "        grants: [broker]\n      - name: crm",
            "        grants: [broker, reporting]\n      - name: crm",
        ),
    )
    lines = apply(settings, db, extra)
    assert "created client acme/reporting" in lines
    assert "created grant acme/snowflake-prod -> reporting" in lines

    lines = apply(settings, db, CONTRACT)
    assert "deleted client acme/reporting" in lines
    assert lines[-1] == "0 created, 0 changed, 8 unchanged, 1 deleted"
    assert count(db, Client) == 1
    assert count(db, Grant) == 2  # the deleted client's grant went with it

    fewer = variant(
        tmp_path,
        CONTRACT,
        ("webhook_secrets: [{env: ACME_WEBHOOK_SECRET}]", "webhook_secrets: []"),
        ("        grants: [broker]\n      - name: crm", "        grants: []\n      - name: crm"),
    )
    lines = apply(settings, db, fewer)
    assert "revoked grant acme/snowflake-prod -> broker" in lines
    assert any(line.startswith("deleted webhook secret acme/whk_") for line in lines)
    assert lines[-1] == "0 created, 0 changed, 6 unchanged, 2 deleted"
    assert apply(settings, db, fewer)[-1] == "0 created, 0 changed, 6 unchanged, 0 deleted"

    crm = "      - name: crm\n" + CONTRACT.read_text().split("      - name: crm\n")[1]
    no_crm = variant(tmp_path, CONTRACT, ("[snowflake-prod, crm]", "[snowflake-prod]"), (crm, ""))
    lines = apply(settings, db, no_crm)
    assert "changed client acme/broker (audiences)" in lines
    assert "deleted integration acme/crm" in lines
    assert lines[-1] == "2 created, 1 changed, 3 unchanged, 1 deleted"  # secret, grant back


def test_an_absent_section_is_left_as_it_is(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    apply(settings, db, CONTRACT)
    bare = tmp_path / "bare.yaml"
    bare.write_text("tenants:\n  - slug: acme\n")
    assert apply(settings, db, bare) == [
        "unchanged tenant acme",
        "0 created, 0 changed, 1 unchanged, 0 deleted",
    ]
    assert apply(settings, db, CONTRACT)[-1] == "0 created, 0 changed, 8 unchanged, 0 deleted"


def test_generated_secrets_are_shown_once_and_never_regenerated(
    settings: Settings, db: Database
) -> None:
    first = "\n".join(apply(settings, db, TWO_TENANTS))
    assert "created tenant globex" in first
    shown = dict(re.findall(r"^  (.+) \(shown once\): (\S+)$", first, re.MULTILINE))
    assert set(shown) == {
        "webhook secret for tenant globex",
        "SCIM token for tenant globex",
        "secret for client globex/reporting",
    }
    assert shown["webhook secret for tenant globex"].startswith("whsec_")
    assert shown["SCIM token for tenant globex"].startswith("scim_")

    second = apply(settings, db, TWO_TENANTS)
    assert "shown once" not in "\n".join(second)
    assert all(line.startswith("unchanged ") for line in second[:-1])

    with db.read() as session:
        tenants.find(session, "globex")
        reporting = session.scalars(select(Client)).one()
        stored = reporting.secret_hash or ""
    secret = shown["secret for client globex/reporting"]
    assert Keyring(settings.secret_key).token_matches(secret, stored)


def test_yaml_syntax_error_names_its_line(settings: Settings, db: Database, tmp_path: Path) -> None:
    broken = variant(tmp_path, TWO_TENANTS, ("client_id: reporting", "client_id: reporting: x"))
    message = fails(settings, db, broken)
    assert message.startswith(f"{broken} line 46 column ")
    assert "mapping values are not allowed here" in message


def test_schema_error_on_a_late_line_names_the_line_and_the_field(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    short = variant(tmp_path, TWO_TENANTS, ("token_lifetime: 300", "token_lifetime: 5"))
    message = fails(settings, db, short)
    assert message.startswith(f"{short} line 43: tenants[1].integrations[0].token_lifetime: ")

    missing = variant(
        tmp_path, TWO_TENANTS, ("        audience: https://warehouse.globex.example\n", "")
    )
    message = fails(settings, db, missing)
    assert f"{missing} line 40: tenants[1].integrations[0].audience: is required" in message


def test_unknown_field_is_named(settings: Settings, db: Database, tmp_path: Path) -> None:
    unknown = variant(
        tmp_path,
        TWO_TENANTS,
        ("        description:", "        colour: blue\n        description:"),
    )
    message = fails(settings, db, unknown)
    assert message == f"{unknown} line 47: tenants[1].clients[0].colour: Unknown field."

    top = tmp_path / "top.yaml"
    top.write_text("tenants: []\nclients: []\n")
    assert fails(settings, db, top) == f"{top} line 2: clients: Unknown field."


def test_missing_environment_variable_is_named(settings: Settings, db: Database) -> None:
    env = {name: value for name, value in ENV.items() if name != "ACME_CRM_SECRET"}
    message = fails(settings, db, CONTRACT, env)
    assert message == (
        f"{CONTRACT} line 33: tenants[0].integrations[1].client_secret.env: "
        "environment variable ACME_CRM_SECRET is not set"
    )
    assert count(db, Tenant) == 0


def test_secrets_in_the_file_are_refused(settings: Settings, db: Database, tmp_path: Path) -> None:
    literal = variant(
        tmp_path, CONTRACT, ("secret: {env: ACME_BROKER_SECRET}", "secret: cs_in_the_file")
    )
    message = fails(settings, db, literal)
    assert message.startswith(f"{literal} line 17: tenants[0].clients[0].secret: must be ")
    assert "never written in the file" in message

    generated = variant(
        tmp_path, CONTRACT, ("client_secret: {env: ACME_CRM_SECRET}", "client_secret: generate")
    )
    assert "line 33: tenants[0].integrations[1].client_secret: must be {env: NAME}" in fails(
        settings, db, generated
    )


def test_an_error_in_the_second_tenant_leaves_nothing_applied(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    wrong = variant(tmp_path, TWO_TENANTS, ("audiences: [warehouse]", "audiences: [warehouse2]"))
    message = fails(settings, db, wrong)
    assert message == (
        f"{wrong} line 49: tenants[1].clients[0].audiences[0]: "
        "no integration named 'warehouse2' in this tenant"
    )
    assert count(db, Tenant) == 0  # acme was written first, then rolled back with the rest

    apply(settings, db, CONTRACT)
    before = all_cells(db)
    changed = variant(
        tmp_path,
        TWO_TENANTS,
        ("audiences: [api://platform]", "audiences: [api://other]"),
        ("audiences: [warehouse]", "audiences: [warehouse2]"),
    )
    assert "line 49: tenants[1].clients[0].audiences[0]" in fails(settings, db, changed)
    assert all_cells(db) == before


def test_duplicates_are_refused(settings: Settings, db: Database, tmp_path: Path) -> None:
    twice = variant(tmp_path, TWO_TENANTS, ("slug: globex", "slug: acme"))
    assert fails(settings, db, twice) == (
        f"{twice} line 24: tenants[1].slug: duplicate tenant 'acme' (also on line 3)"
    )
    key = tmp_path / "key.yaml"
    key.write_text("tenants:\n  - slug: acme\n    display_name: A\n    display_name: B\n")
    assert fails(settings, db, key) == f"{key} line 4: tenants[0]: duplicate key 'display_name'"
    assert count(db, Tenant) == 0


def test_the_command_line_applies_the_file(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    env = {
        "IDBRIDGE_DATABASE_URL": settings.database_url,
        "IDBRIDGE_SECRET_KEY": settings.secret_key,
        "IDBRIDGE_INSTANCE_PATH": str(tmp_path / "instance"),
        **ENV,
    }
    runner = CliRunner()
    failed = runner.invoke(main, ["apply", "-f", str(CONTRACT)], env=env | {"ACME_SCIM_TOKEN": ""})
    assert failed.exit_code == 1
    assert "environment variable ACME_SCIM_TOKEN is empty" in failed.stderr
    assert "nothing was applied" in failed.stderr

    result = runner.invoke(main, ["apply", "-f", str(CONTRACT)], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "8 created, 0 changed, 0 unchanged, 0 deleted"
    again = runner.invoke(main, ["apply", "-f", str(CONTRACT)], env=env)
    assert again.stdout.splitlines()[-1] == "0 created, 0 changed, 8 unchanged, 0 deleted"
