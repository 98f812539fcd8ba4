"""Tenant isolation by construction: tenant A's credentials and ids reach nothing of tenant B."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from app import audit, clients, credentials, integrations, runtime, tenancy, tenants
from app.errors import NotFound
from app.models import Client, Grant, Integration, ScimToken, Tenant, WebhookSecret
from app.schemas import ClientSchema, IntegrationSchema, TenantSchema
from tests.conftest import remember_secret


@dataclass
class Seeded:
    tenant_id: int
    client_pk: int
    integration_pk: int
    client_secret: str
    scim_token: str
    webhook_secret: str


def _seed(rt: runtime.Runtime, slug: str) -> Seeded:
    with rt.db.transaction() as session:
        tenant = tenants.create(session, rt.keyring, TenantSchema().load({"slug": slug}))
        integration = integrations.create(
            session,
            rt.keyring,
            tenant,
            IntegrationSchema().load(
                {"name": "warehouse", "kind": "snowflake", "audience": f"https://{slug}.example"}
            ),
        )
        client, secret = clients.create(
            session,
            rt.keyring,
            tenant,
            ClientSchema().load({"client_id": "broker", "audiences": ["warehouse"]}),
        )
        integrations.grant(session, client, integration)
        _, scim_token = credentials.add_scim_token(session, rt.keyring, tenant, None)
        _, webhook_secret = credentials.add_webhook_secret(session, rt.keyring, tenant, None)
        session.flush()
        seeded = Seeded(
            tenant.id, client.id, integration.id, secret or "", scim_token, webhook_secret
        )
    for value in (seeded.client_secret, seeded.scim_token, seeded.webhook_secret):
        remember_secret(value)
    return seeded


@pytest.fixture
def two_tenants(app):
    rt = runtime.of(app)
    return rt, _seed(rt, "tenant-a"), _seed(rt, "tenant-b")


def test_ids_of_another_tenant_reach_nothing(two_tenants):
    rt, a, b = two_tenants
    with rt.db.read() as session:
        tenants.find(session, "tenant-a")
        for model, pk in ((Client, b.client_pk), (Integration, b.integration_pk)):
            assert session.get(model, pk) is None
        assert session.scalars(select(Client)).all() == [session.get(Client, a.client_pk)]
        assert len(session.scalars(select(Grant)).all()) == 1
        assert {row.tenant_id for row in session.scalars(select(ScimToken))} == {a.tenant_id}
        assert {row.tenant_id for row in session.scalars(select(WebhookSecret))} == {a.tenant_id}


def test_bulk_update_and_delete_stay_in_scope(two_tenants):
    rt, a, b = two_tenants
    with rt.db.transaction() as session:
        tenants.find(session, "tenant-a")
        session.execute(update(Client).values(description="touched"))
        session.execute(delete(ScimToken))
    with rt.db.read() as session:
        tenancy.cross_tenant(session)
        described = dict(session.execute(select(Client.tenant_id, Client.description)).all())
        assert described == {a.tenant_id: "touched", b.tenant_id: ""}
        assert session.scalars(select(ScimToken.tenant_id)).all() == [b.tenant_id]


def test_credentials_of_a_work_only_under_a(two_tenants):
    rt, a, b = two_tenants
    with rt.db.read() as session:
        tenant_b = tenants.find(session, "tenant-b")
        assert clients.authenticate(session, rt.keyring, "broker", a.client_secret) is None
        assert clients.authenticate(session, rt.keyring, "broker", b.client_secret) is not None
        assert credentials.scim_token_for(session, rt.keyring, a.scim_token) is None
        assert credentials.scim_token_for(session, rt.keyring, b.scim_token) is not None
        keys = credentials.active_webhook_keys(session, rt.keyring, tenant_b)
        assert keys == [b.webhook_secret]


def test_names_resolve_within_the_scoped_tenant_only(two_tenants):
    rt, _a, _b = two_tenants
    with rt.db.transaction() as session:
        tenants.find(session, "tenant-a")
        session.execute(delete(Integration))
    with rt.db.read() as session:
        tenants.find(session, "tenant-a")
        with pytest.raises(NotFound):
            integrations.find(session, "warehouse")  # tenant B still has one by that name


def test_unscoped_sessions_refuse_tenant_rows(two_tenants):
    rt, _a, _b = two_tenants
    with rt.db.read() as session, pytest.raises(tenancy.TenancyViolation):
        session.scalars(select(Client)).all()
    with pytest.raises(tenancy.TenancyViolation), rt.db.transaction() as session:
        session.add(ScimToken(tenant_id=1, public_id="sct_x", token_hash="0" * 64))


def test_writing_another_tenants_row_is_refused(two_tenants):
    rt, _a, b = two_tenants
    with pytest.raises(tenancy.TenancyViolation), rt.db.transaction() as session:
        tenants.find(session, "tenant-a")
        session.add(ScimToken(tenant_id=b.tenant_id, public_id="sct_y", token_hash="1" * 64))
    with pytest.raises(tenancy.TenancyViolation), rt.db.transaction() as session:
        tenant_a = tenants.find(session, "tenant-a")
        tenancy.scope(
            session, session.scalars(select(Tenant).where(Tenant.slug == "tenant-b")).one()
        )
        del tenant_a


def test_an_audit_row_is_written_for_the_scoped_tenant_only(two_tenants):
    """``audit.record`` inserts without the unit of work: the guard checks its INSERT."""
    rt, a, b = two_tenants
    entry = audit.Entry(action="token_exchange", client_id="broker")
    with pytest.raises(tenancy.TenancyViolation), rt.db.transaction() as session:
        tenants.find(session, "tenant-a")
        audit.record(session, b.tenant_id, entry, audit.SUCCESS)
    with pytest.raises(tenancy.TenancyViolation), rt.db.transaction() as session:
        audit.record(session, a.tenant_id, entry, audit.SUCCESS)  # unscoped
    with rt.db.transaction() as session:
        tenants.find(session, "tenant-a")
        audit.record(session, a.tenant_id, entry, audit.SUCCESS)
    for slug, expected in (("tenant-a", 1), ("tenant-b", 0)):
        with rt.db.read() as session:
            tenants.find(session, slug)
            assert len(audit.query(session, limit=10)) == expected


def test_the_database_refuses_a_cross_tenant_grant(two_tenants):
    """Composite foreign keys: a grant's client and integration share the grant's tenant."""
    rt, a, b = two_tenants
    with rt.db.engine.connect() as connection, pytest.raises(IntegrityError):
        connection.execute(
            Grant.__table__.insert().values(
                tenant_id=a.tenant_id, client_pk=a.client_pk, integration_pk=b.integration_pk
            )
        )
        connection.commit()


def test_sealed_secrets_do_not_open_under_another_tenant(two_tenants):
    rt, a, b = two_tenants
    with rt.db.read() as session:
        tenancy.cross_tenant(session)
        row_a = session.scalars(
            select(WebhookSecret).where(WebhookSecret.tenant_id == a.tenant_id)
        ).one()
        tenant_b = session.get(Tenant, b.tenant_id)
        assert a.webhook_secret not in row_a.secret_sealed
        with pytest.raises(Exception, match="does not open"):
            rt.keyring.open(row_a.secret_sealed, credentials.webhook_secret_context(tenant_b))


def test_every_form_of_an_orm_insert_names_the_scoped_tenant(two_tenants):
    """``values()`` (one row or several), a ``bindparam`` filled at execution, executemany
    parameters: each row must name the scoped tenant; an upsert that updates on conflict and
    an SQL expression for the tenant cannot be checked, so they are refused."""
    rt, a, b = two_tenants
    row = {"public_id": "sct_z", "token_hash": "2" * 64}
    dialect = postgresql if rt.db.engine.dialect.name == "postgresql" else sqlite
    refused = [
        (insert(ScimToken).values(tenant_id=b.tenant_id, **row), None),
        (
            insert(ScimToken).values([row | {"tenant_id": a.tenant_id}, row | {"tenant_id": 0}]),
            None,
        ),
        (insert(ScimToken).values(tenant_id=bindparam("t"), **row), {"t": b.tenant_id}),
        (insert(ScimToken).values(tenant_id=select(Tenant.id).scalar_subquery(), **row), None),
        (insert(ScimToken), [row | {"tenant_id": a.tenant_id}, row | {"tenant_id": b.tenant_id}]),
        (
            dialect.insert(ScimToken)
            .values(tenant_id=a.tenant_id, **row)
            .on_conflict_do_update(index_elements=["id"], set_={"source": "x"}),
            None,
        ),
    ]
    for statement, params in refused:
        with pytest.raises(tenancy.TenancyViolation), rt.db.transaction() as session:
            tenants.find(session, "tenant-a")
            session.execute(statement, params)
    with rt.db.transaction() as session:
        tenants.find(session, "tenant-a")
        session.execute(
            insert(ScimToken).values(tenant_id=bindparam("t"), **row), {"t": a.tenant_id}
        )
        session.execute(
            dialect.insert(ScimToken).values(tenant_id=a.tenant_id, **row).on_conflict_do_nothing()
        )
    with rt.db.read() as session:
        tenancy.cross_tenant(session)
        found = session.scalars(select(ScimToken.tenant_id).where(ScimToken.public_id == "sct_z"))
        assert found.all() == [a.tenant_id]


def test_after_release_no_row_of_the_tenant_before_is_found(two_tenants):
    """``apply`` walks tenants in one transaction: a row loaded under A is not answered by
    primary key (from the identity map, without a query) once the session serves B."""
    rt, a, _b = two_tenants
    with rt.db.transaction() as session:
        tenants.find(session, "tenant-a")
        loaded = session.get(Client, a.client_pk)  # held: the identity map keeps it
        tenancy.release(session)
        tenants.find(session, "tenant-b")
        assert session.get(Client, a.client_pk) is None
        assert loaded.client_id == "broker"  # still readable, no longer the session's


def test_a_session_is_scoped_or_cross_tenant_never_both(two_tenants):
    rt, a, _b = two_tenants
    with rt.db.read() as session, pytest.raises(tenancy.TenancyViolation):
        tenancy.cross_tenant(session)
        tenancy.scope_id(session, a.tenant_id)
    with rt.db.read() as session, pytest.raises(tenancy.TenancyViolation):
        tenancy.scope_id(session, a.tenant_id)
        tenancy.cross_tenant(session)
