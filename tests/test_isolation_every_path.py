"""Tenant isolation on every entry point (issue 13, point 1): every ``idbridge`` command,
every admin API operation and every scheduled job, run for tenant ``beta``, reads and writes
nothing of tenant ``alpha``, whose clients, integrations, users and mappings have the same
names (tests/isolation_support.py).

Commands run as real processes: a process that never built an app is exactly where a guard
installed by the app factory was missing (``mappings import`` wrote into alpha's mappings,
``audit`` and ``keys rotate`` read every tenant). Admin operations and commands are
enumerated from the Flask URL map and the click group, so a new one fails here until it is
exercised.
"""

from __future__ import annotations

import json
from typing import Any

import click
import pytest
from sqlalchemy import select

from app import jobs, runtime, tenancy
from app.cli import main
from app.models import OutboxMessage, ScimToken, SigningKey, WebhookSecret
from tests.conftest import remember_secret
from tests.isolation_support import SECRETS, A, B, idbridge, seed, snapshot


@pytest.fixture
def rt(app) -> runtime.Runtime:
    found = runtime.of(app)
    seed(found, A, due=False)
    seed(found, B, due=True)
    return found


def clean(text: str) -> str:
    """``text`` (an answer to beta), checked to name nothing of alpha."""
    assert A not in text, text
    return text


# --- the command line -------------------------------------------------------------------------

NOT_RUN = {
    "serve": "serves the HTTP API: the admin test below drives its every tenant operation",
    "demo": "makes its own demo store on SQLite with a single tenant, then serves it",
}
APPLY = """
tenants:
  - slug: beta
    display_name: beta applied
    clients:
      - client_id: broker
        description: beta's broker, applied
        secret: {env: BETA_BROKER_SECRET}
        audiences: [warehouse]
    integrations:
      - name: warehouse
        kind: jwt
        audience: https://warehouse.example
        token_lifetime: 300
        grants: [broker]
"""


def commands(group: click.Group, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= commands(command, f"{prefix}{name} ")
        else:
            found.add(prefix + name)
    return found


def test_every_command_run_for_beta_leaves_alpha_alone(rt, settings, tmp_path):
    before = snapshot(rt.db, A)
    (tmp_path / "beta.yaml").write_text(APPLY)
    (tmp_path / "beta.csv").write_text("user_id,upstream_subject\n00u1,beta-csv\n00u2,beta-csv\n")
    ran: dict[str, str] = {}

    def run(command: str, *args: str, **env: str) -> str:
        done = idbridge(tmp_path, settings.database_url, *command.split(), *args, **env)
        assert done.returncode == 0, done.stderr
        ran[command] = clean(done.stdout + done.stderr)
        return done.stdout

    run("apply", "-f", str(tmp_path / "beta.yaml"), BETA_BROKER_SECRET=SECRETS[B])
    assert run("mappings import", B, "warehouse", str(tmp_path / "beta.csv")).endswith(
        "1 created, 1 updated, 0 unchanged\n"
    )
    assert run("keys rotate", B).startswith("tenant beta: key ")
    events = [json.loads(line) for line in run("audit", B).splitlines()]
    assert [event["reason"] for event in events] == ["beta was here"]
    broker = json.loads(run("admin", "GET", f"tenants/{B}/clients/broker"))
    assert broker["description"] == "beta's broker, applied"
    body = '{"upstream_subject": "beta-admin"}'
    run("admin", "PUT", f"tenants/{B}/integrations/warehouse/mappings/00u1", "-d", body)
    run("admin", "PATCH", f"tenants/{B}/users/00u1", "-d", '{"blocked": true}')
    run("admin", "DELETE", f"tenants/{B}/clients/broker")

    assert set(ran) | set(NOT_RUN) == commands(main), "a command is neither run nor excused"
    assert snapshot(rt.db, A) == before
    after = snapshot(rt.db, B)
    assert {row["subject"]: row["upstream_subject"] for row in after["UpstreamMapping"]} == {
        "00u1": "beta-admin",
        "00u2": "beta-csv",
    }
    assert after["Client"] == [] and len(after["SigningKey"]) == 2


def test_mappings_import_names_the_integration_of_its_own_tenant(rt, settings, tmp_path):
    """The bug of issue 13: alpha made ``warehouse`` first, and beta's import wrote there."""
    before = snapshot(rt.db, A)
    (tmp_path / "beta.csv").write_text("user_id,upstream_subject\n00u1,BETA-ONLY\n")
    done = idbridge(
        tmp_path, settings.database_url, "mappings", "import", B, "warehouse", "beta.csv"
    )
    assert done.returncode == 0, done.stderr
    assert snapshot(rt.db, A) == before
    beta = snapshot(rt.db, B)["UpstreamMapping"]
    assert [row["upstream_subject"] for row in beta] == ["BETA-ONLY"]


def test_audit_prints_its_own_tenants_events_only(rt, settings, tmp_path):
    done = idbridge(tmp_path, settings.database_url, "audit", B)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in clean(done.stdout).splitlines()]
    assert [(line["request_id"], line["reason"]) for line in lines] == [
        ("beta-req", "beta was here")
    ]


# --- the admin API ----------------------------------------------------------------------------

T = "/tenants/<slug:slug>"
CLIENT = T + "/clients/<client_id:client_id>"
INTEGRATION = T + "/integrations/<name:name>"
MAPPING = INTEGRATION + "/mappings/<subject>"
WEBHOOK_SECRET = T + "/webhook-secrets/<webhook_secret_id:secret_id>"
SCIM_TOKEN = T + "/scim-tokens/<scim_token_id:token_id>"
GRANT = T + "/grants/<client_id:client_id>/<name:integration>"
LAKE = {"name": "lake", "kind": "jwt", "audience": "https://lake.example"}
IMPORT = {"mappings": [{"user_id": "00u2", "upstream_subject": "beta-2"}]}
B_ = f"/tenants/{B}"
# (method, rule, path, body, status), in order: beta's own names, which alpha has too, and
# names only alpha has (creating them under beta must not meet alpha's); deletions last.
STEPS: list[tuple[str, str, str, Any, int]] = [
    ("GET", "/tenants", "/tenants", None, 200),
    ("POST", "/tenants", "/tenants", {"slug": "gamma"}, 201),
    ("GET", T, B_, None, 200),
    ("PATCH", T, B_, {"display_name": "beta patched"}, 200),
    ("GET", T + "/clients", f"{B_}/clients", None, 200),
    ("POST", T + "/clients", f"{B_}/clients", {"client_id": "spare"}, 201),
    ("GET", CLIENT, f"{B_}/clients/broker", None, 200),
    ("PATCH", CLIENT, f"{B_}/clients/broker", {"description": "patched"}, 200),
    ("POST", CLIENT + "/secret", f"{B_}/clients/broker/secret", None, 200),
    ("GET", T + "/integrations", f"{B_}/integrations", None, 200),
    ("POST", T + "/integrations", f"{B_}/integrations", LAKE, 201),
    ("GET", INTEGRATION, f"{B_}/integrations/warehouse", None, 200),
    ("PATCH", INTEGRATION, f"{B_}/integrations/warehouse", {"token_lifetime": 300}, 200),
    ("GET", T + "/grants", f"{B_}/grants", None, 200),
    ("POST", T + "/grants", f"{B_}/grants", {"client_id": "spare", "integration": "lake"}, 201),
    ("DELETE", GRANT, f"{B_}/grants/spare/lake", None, 204),
    ("GET", INTEGRATION + "/mappings", f"{B_}/integrations/warehouse/mappings", None, 200),
    ("POST", INTEGRATION + "/mappings", f"{B_}/integrations/warehouse/mappings", IMPORT, 200),
    ("GET", MAPPING, f"{B_}/integrations/warehouse/mappings/00u1", None, 200),
    ("PUT", MAPPING, f"{B_}/integrations/warehouse/mappings/00u1", {"upstream_subject": "b"}, 200),
    ("DELETE", MAPPING, f"{B_}/integrations/warehouse/mappings/00u1", None, 204),
    ("GET", T + "/users/<user_id>", f"{B_}/users/00u1", None, 200),
    ("PATCH", T + "/users/<user_id>", f"{B_}/users/00u1", {"blocked": True}, 200),
    ("GET", T + "/signing-keys", f"{B_}/signing-keys", None, 200),
    ("POST", T + "/signing-keys", f"{B_}/signing-keys", None, 201),
    ("GET", T + "/audit", f"{B_}/audit", None, 200),
    ("GET", T + "/webhook-secrets", f"{B_}/webhook-secrets", None, 200),
    ("POST", T + "/webhook-secrets", f"{B_}/webhook-secrets", None, 201),
    ("DELETE", WEBHOOK_SECRET, f"{B_}/webhook-secrets/{{alpha_webhook_secret}}", None, 404),
    ("DELETE", WEBHOOK_SECRET, f"{B_}/webhook-secrets/{{beta_webhook_secret}}", None, 204),
    ("GET", T + "/scim-tokens", f"{B_}/scim-tokens", None, 200),
    ("POST", T + "/scim-tokens", f"{B_}/scim-tokens", None, 201),
    ("DELETE", SCIM_TOKEN, f"{B_}/scim-tokens/{{alpha_scim_token}}", None, 404),
    ("DELETE", SCIM_TOKEN, f"{B_}/scim-tokens/{{beta_scim_token}}", None, 204),
    ("DELETE", INTEGRATION, f"{B_}/integrations/lake", None, 204),
    ("DELETE", CLIENT, f"{B_}/clients/spare", None, 204),
    ("DELETE", T, B_, None, 204),
]


def admin_operations(app) -> set[tuple[str, str]]:
    return {
        (method, rule.rule.removeprefix("/admin/v1"))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/admin/v1/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def test_every_admin_operation_on_beta_leaves_alpha_alone(rt, app, client, admin_headers):
    assert {(method, rule) for method, rule, *_ in STEPS} == admin_operations(app), (
        "an admin operation is not exercised here"
    )
    before = snapshot(rt.db, A)
    ids = {
        "alpha_webhook_secret": before["WebhookSecret"][0]["public_id"],
        "alpha_scim_token": before["ScimToken"][0]["public_id"],
    }
    for method, rule, path, body, status in STEPS:
        url = "/admin/v1" + path.format(**ids)
        answer = client.open(url, method=method, json=body, headers=admin_headers)
        assert answer.status_code == status, (method, url, answer.get_json())
        shown = answer.get_json(silent=True)
        for key in ("client_secret", "secret", "token") if isinstance(shown, dict) else ():
            remember_secret(shown.get(key) or "")
        if path.startswith(B_):
            clean(answer.get_data(as_text=True))
        if method == "POST" and rule in (T + "/webhook-secrets", T + "/scim-tokens"):
            ids[f"beta_{rule.rsplit('/', 1)[1].replace('-', '_')[:-1]}"] = answer.get_json()["id"]
    assert snapshot(rt.db, A) == before


# --- the scheduled jobs -----------------------------------------------------------------------


def test_every_scheduled_job_writes_under_the_tenant_it_works_for(rt):
    """Jobs sweep every tenant on purpose (``cross_tenant``): beta has work due, alpha has
    none, and running every job changes beta's rows only."""
    before = snapshot(rt.db, A)
    beta_id = snapshot(rt.db, B)["Tenant"][0]["id"]
    scheduled = jobs.scheduled(rt.settings)
    assert {job.name for job in scheduled} == {"rotate-signing-keys", "cleanup", "outbox"}
    for job in scheduled:
        job.work(rt)
    assert snapshot(rt.db, A) == before
    with rt.db.read() as session:
        tenancy.cross_tenant(session)
        tried = session.scalars(select(OutboxMessage).where(OutboxMessage.attempts > 0)).all()
        assert [(row.tenant_id, row.last_error) for row in tried] == [
            (beta_id, "MailNotConfigured")
        ]
        assert len(session.scalars(select(SigningKey)).all()) == 3  # alpha 1, beta 2
        assert len(session.scalars(select(WebhookSecret)).all()) == 2
        assert len(session.scalars(select(ScimToken)).all()) == 2
