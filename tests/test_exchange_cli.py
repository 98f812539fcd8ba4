"""``idbridge mappings import``, ``idbridge keys rotate`` and ``idbridge audit`` on both
stores."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app import audit, integrations, mappings, runtime, signing, tenants
from app.cli import main
from app.schemas import IntegrationSchema, TenantSchema
from tests.conftest import remember_secret


@pytest.fixture
def env(app, settings, tmp_path) -> dict[str, str]:
    rt = runtime.of(app)
    with rt.db.transaction() as session:
        tenant = tenants.create(session, rt.keyring, TenantSchema().load({"slug": "acme"}))
        integrations.create(
            session,
            rt.keyring,
            tenant,
            IntegrationSchema().load(
                {"name": "snowflake-prod", "kind": "snowflake", "audience": "https://sf.example"}
            ),
        )
    return {
        "IDBRIDGE_DATABASE_URL": settings.database_url,
        "IDBRIDGE_SECRET_KEY": settings.secret_key,
        "IDBRIDGE_INSTANCE_PATH": str(tmp_path / "instance"),
    }


def stored(app) -> dict[str, str]:
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        integration = integrations.find(session, "snowflake-prod")
        rows = mappings.list_page(session, integration, 200_000, None)
        return {row.subject: row.upstream_subject for row in rows}


def test_mappings_import_is_all_or_nothing(app, env, tmp_path):
    """CONTRACT §5: header `user_id,upstream_subject`; any bad row, and nothing is imported,
    every bad row named with its line and reason."""
    runner = CliRunner()
    args = ["mappings", "import", "acme", "snowflake-prod"]
    flawed = tmp_path / "flawed.csv"
    flawed.write_text("user_id,upstream_subject\n00u1,ADA\n00u2,\n,GHOST\n00u1,ADA2\n00u3,GRACE\n")
    result = runner.invoke(main, [*args, str(flawed)], env=env)
    assert result.exit_code == 1
    assert [line for line in result.stderr.splitlines() if line.startswith("line")] == [
        "line 3: upstream_subject is empty",
        "line 4: user_id is empty",
        "line 5: user_id '00u1' appears more than once in the file",
    ]
    assert "3 rows rejected: nothing was imported" in result.stderr
    assert stored(app) == {}

    good = tmp_path / "good.csv"
    good.write_text("user_id,upstream_subject\n00u1,ADA\n00u3,GRACE\n")
    imported = runner.invoke(main, [*args, str(good)], env=env)
    assert imported.exit_code == 0, imported.output
    assert imported.stdout.splitlines()[-1] == "2 created, 0 updated, 0 unchanged"
    assert stored(app) == {"00u1": "ADA", "00u3": "GRACE"}
    again = runner.invoke(main, [*args, str(good)], env=env)
    assert again.stdout.splitlines()[-1] == "0 created, 0 updated, 2 unchanged"

    bad = tmp_path / "bad.csv"
    bad.write_text("user,login\n00u9,X\n")
    refused = runner.invoke(main, [*args, str(bad)], env=env)
    assert refused.exit_code == 1
    assert "user_id,upstream_subject" in refused.stderr
    nowhere = runner.invoke(main, ["mappings", "import", "acme", "nope", str(good)], env=env)
    assert nowhere.exit_code == 1 and "nothing was imported" in nowhere.stderr


def test_a_large_import_is_one_transaction(app, env, tmp_path):
    csv_file = tmp_path / "many.csv"
    lines = ["user_id,upstream_subject"] + [f"u{n:06d},LOGIN{n}" for n in range(20_000)]
    csv_file.write_text("\n".join(lines) + "\n")
    args = ["mappings", "import", "acme", "snowflake-prod"]
    result = CliRunner().invoke(main, [*args, str(csv_file)], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "20000 created, 0 updated, 0 unchanged"
    assert len(stored(app)) == 20_000


def test_keys_rotate_publishes_a_second_key(app, env):
    runner = CliRunner()
    first = runner.invoke(main, ["keys", "rotate", "acme"], env=env)
    second = runner.invoke(main, ["keys", "rotate", "acme"], env=env)
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        keys = signing.published(session)
        assert len(keys) == 2
        assert signing.signer(session, runtime.of(app).keyring, tenants.find(session, "acme"))
    missing = runner.invoke(main, ["keys", "rotate", "nope"], env=env)
    assert missing.exit_code == 1


def test_audit_prints_events_newest_first(app, env):
    rt = runtime.of(app)
    with rt.db.transaction() as session:
        tenant = tenants.find(session, "acme")
        for subject, outcome in (("00u1", "success"), ("00u2", "failure")):
            entry = audit.Entry(action="token_exchange", client_id="broker", subject=subject)
            audit.record(session, tenant.id, entry, outcome)
    result = CliRunner().invoke(main, ["audit", "acme"], env=env)
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [event["user"] for event in events] == ["00u2", "00u1"]
    failures = CliRunner().invoke(main, ["audit", "acme", "--outcome", "failure"], env=env)
    assert [json.loads(line)["user"] for line in failures.stdout.splitlines()] == ["00u2"]


def test_the_scheduled_job_rotates_due_keys_once(app, env, settings):
    from datetime import timedelta

    from app import key_rotation

    assert key_rotation.rotate_due_keys(settings) == []  # no key yet: nothing to rotate
    rt = runtime.of(app)
    with rt.db.transaction() as session:
        signing.ensure_key(session, rt.keyring, tenants.find(session, "acme"))
    assert key_rotation.rotate_due_keys(settings) == []  # young key
    assert key_rotation.rotate_due_keys(settings, max_age=timedelta(0)) == ["acme"]
    # the next key is waiting to activate: no second rotation
    assert key_rotation.rotate_due_keys(settings, max_age=timedelta(0)) == []
    with rt.db.read() as session:
        tenants.find(session, "acme")
        assert len(signing.published(session)) == 2


def test_every_admin_operation_is_on_the_command_line(app, env, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(main, ["admin", "GET", "/tenants"], env=env)
    assert listed.exit_code == 0, listed.output
    assert [item["slug"] for item in json.loads(listed.stdout)["items"]] == ["acme"]
    body = tmp_path / "client.json"
    body.write_text('{"client_id": "reporting", "audiences": ["snowflake-prod"]}')
    created = runner.invoke(
        main, ["admin", "POST", "tenants/acme/clients", "-d", f"@{body}"], env=env
    )
    assert created.exit_code == 0, created.output
    remember_secret(json.loads(created.stdout)["client_secret"])
    duplicate = runner.invoke(
        main, ["admin", "POST", "tenants/acme/clients", "-d", f"@{body}"], env=env
    )
    assert duplicate.exit_code == 1 and json.loads(duplicate.stdout)["code"] == 409
