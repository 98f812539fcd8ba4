"""The idbridge SCIM extension's ``upstreamIdentities`` feed the token-exchange mappings."""

from __future__ import annotations

import pytest

from app import integrations, mappings, runtime, tenants
from app.models import UpstreamMapping
from app.oauth_errors import UserNotProvisioned
from app.schemas import IntegrationSchema
from app.users import by_subject
from tests.scim_support import IDBRIDGE, Scim, make_tenant, user_body


@pytest.fixture
def scim(app, client) -> Scim:
    token = make_tenant(app, "acme")
    rt = runtime.of(app)
    with rt.db.transaction() as session:
        tenant = tenants.find(session, "acme")
        for name in ("warehouse", "crm"):
            integrations.create(
                session,
                rt.keyring,
                tenant,
                IntegrationSchema().load(
                    {"name": name, "kind": "jwt", "audience": f"https://{name}.example"}
                ),
            )
    return Scim(client, "acme", token)


def upstream(app, integration: str, subject: str = "00u1") -> str | None:
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        try:
            return mappings.upstream_subject(
                session, integrations.find(session, integration), by_subject(session, subject)
            )
        except UserNotProvisioned:
            return None


def with_identities(*pairs: tuple[str, str]) -> dict:
    body = user_body("ada@example.com", external_id="00u1")
    body[IDBRIDGE]["upstreamIdentities"] = [
        {"integration": name, "subject": subject} for name, subject in pairs
    ]
    return body


def test_identities_become_mappings_and_follow_the_resource(app, scim):
    created = scim.post("/Users", with_identities(("warehouse", "ADA"), ("unknown", "x")))
    assert created.status_code == 201
    assert upstream(app, "warehouse") == "ADA"
    assert upstream(app, "crm") is None  # not named: user_not_provisioned there

    user_id = created.json["id"]
    replaced = scim.put(f"/Users/{user_id}", with_identities(("crm", "ada.l")))
    assert replaced.status_code == 200
    assert upstream(app, "warehouse") is None and upstream(app, "crm") == "ada.l"

    assert scim.call("DELETE", f"/Users/{user_id}").status_code == 204
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        assert session.query(UpstreamMapping).count() == 0


def test_scim_leaves_mappings_from_the_admin_api_alone(app, scim):
    assert scim.post("/Users", with_identities(("warehouse", "ADA"))).status_code == 201
    with runtime.of(app).db.transaction() as session:
        tenants.find(session, "acme")
        mappings.put(session, integrations.find(session, "crm"), "00u1", "set-by-operator")
    body = with_identities(("warehouse", "ADA2"))
    user_id = scim.get("/Users?filter=userName%20eq%20%22ada@example.com%22").json["Resources"][0][
        "id"
    ]
    assert scim.put(f"/Users/{user_id}", body).status_code == 200
    assert upstream(app, "warehouse") == "ADA2" and upstream(app, "crm") == "set-by-operator"
