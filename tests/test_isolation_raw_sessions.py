"""A session of the store refuses tenant-owned rows by itself (issue 13, point 1): whatever
made it (an app, a command, a job, a test), wherever the statement names the table, for every
``TenantOwned`` model. Unscoped, every read and write of such rows is refused; scoped, only
the scoped tenant's rows are reached and a statement the guard cannot scope is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, text, update

from app import runtime, tenancy
from app.models import Tenant
from tests.isolation_support import TENANT_OWNED, A, B, seed, snapshot

Model = Any
READS: dict[str, Callable[[Model], Any]] = {
    "ORM entities": lambda m: select(m),
    "ORM columns": lambda m: select(m.tenant_id),
    "count": lambda m: select(func.count()).select_from(m),
    "a subquery": lambda m: select(Tenant.slug).where(Tenant.id.in_(select(m.tenant_id))),
    "Core columns": lambda m: select(m.__table__.c.tenant_id),
    "a Core table": lambda m: select(m.__table__),
    "SQL text": lambda m: text("SELECT * FROM " + m.__tablename__),  # noqa: S608 (a table name)
}
WRITES: dict[str, Callable[[Model, int], Any]] = {
    "ORM update": lambda m, t: update(m).values(tenant_id=t),
    "ORM delete": lambda m, _t: delete(m),
    "ORM-enabled insert": lambda m, t: insert(m).values(tenant_id=t),
    "Core update": lambda m, t: m.__table__.update().values(tenant_id=t),
    "Core delete": lambda m, _t: m.__table__.delete(),
    "Core insert": lambda m, t: m.__table__.insert().values(tenant_id=t),
}


@pytest.fixture(scope="module", params=TENANT_OWNED, ids=lambda model: model.__name__)
def model(request: pytest.FixtureRequest) -> Model:
    return request.param


@pytest.fixture
def rt(app) -> runtime.Runtime:
    found = runtime.of(app)
    seed(found, A, due=False)
    seed(found, B, due=False)
    return found


def ids(rt: runtime.Runtime) -> tuple[int, int]:
    return snapshot(rt.db, A)["Tenant"][0]["id"], snapshot(rt.db, B)["Tenant"][0]["id"]


def test_an_unscoped_store_session_refuses_every_statement_on_the_rows(rt, model):
    before = snapshot(rt.db, A)
    alpha, _ = ids(rt)
    for opened in (rt.db.read, rt.db.transaction):
        for name, read in READS.items():
            with pytest.raises(tenancy.TenancyViolation), opened() as session:
                session.execute(read(model)).all()
                pytest.fail(f"{name} of {model.__name__} read without a scope")
    for name, write in WRITES.items():
        with pytest.raises(tenancy.TenancyViolation), rt.db.transaction() as session:
            session.execute(write(model, alpha))
            pytest.fail(f"{name} of {model.__name__} ran without a scope")
    with pytest.raises(tenancy.TenancyViolation), rt.db.transaction() as session:
        session.execute(insert(model), [{"tenant_id": alpha}])
    with pytest.raises(tenancy.TenancyViolation), rt.db.transaction() as session:
        session.add(model(tenant_id=alpha))
        session.flush()
    assert snapshot(rt.db, A) == before


def test_a_scoped_store_session_reaches_its_tenant_only(rt, model):
    before = snapshot(rt.db, A)
    alpha, beta = ids(rt)
    with rt.db.transaction() as session:
        tenancy.scope_id(session, beta)
        rows = session.scalars(select(model)).all()
        assert rows and {row.tenant_id for row in rows} == {beta}
        assert session.scalar(select(func.count()).select_from(model)) == len(rows)
        assert set(session.scalars(select(model.tenant_id))) == {beta}  # columns, no entity
        keep = update(model).values(tenant_id=model.tenant_id)
        assert session.execute(keep.execution_options(synchronize_session=False)).rowcount == len(
            rows
        )
        for name in ("a Core table", "Core columns", "SQL text"):
            with pytest.raises(tenancy.TenancyViolation):
                session.execute(READS[name](model))
        for name in ("Core update", "Core delete", "Core insert"):
            with pytest.raises(tenancy.TenancyViolation):
                session.execute(WRITES[name](model, beta))
        for refused in (
            insert(model).values(tenant_id=alpha),
            insert(model).from_select(["tenant_id"], select(model.tenant_id)),
        ):
            with pytest.raises(tenancy.TenancyViolation):
                session.execute(refused)
        with pytest.raises(tenancy.TenancyViolation):  # bulk UPDATE by primary key
            session.execute(update(model), [{"id": row["id"]} for row in before[model.__name__]])
        for rows_given in (
            [{"tenant_id": alpha}],
            [{"tenant_id": beta}, {"tenant_id": alpha}],
            [{}],
        ):
            with pytest.raises(tenancy.TenancyViolation):
                session.execute(insert(model), rows_given)
        session.execute(delete(model).execution_options(synchronize_session=False))
    with pytest.raises(tenancy.TenancyViolation), rt.db.transaction() as session:
        tenancy.scope_id(session, beta)
        session.add(model(tenant_id=alpha))
        session.flush()
    assert snapshot(rt.db, A) == before
    assert snapshot(rt.db, B)[model.__name__] == []


def test_the_ways_around_the_orm_events_are_closed(rt):
    alpha, beta = ids(rt)
    for opened in (rt.db.read, rt.db.transaction):
        with opened() as session:
            assert isinstance(session, tenancy.StoreSession)
            tenancy.scope_id(session, beta)
            with pytest.raises(tenancy.TenancyViolation):
                session.connection()
    with rt.db.transaction() as session:
        tenancy.scope_id(session, beta)
        model = TENANT_OWNED[0]
        for bulk in (session.bulk_insert_mappings, session.bulk_update_mappings):
            with pytest.raises(tenancy.TenancyViolation):
                bulk(model, [{"tenant_id": alpha}])
        with pytest.raises(tenancy.TenancyViolation):
            session.bulk_save_objects([model(tenant_id=alpha)])
        # the named way around, for reads that need every tenant on purpose
        table = model.__table__
        found = tenancy.unguarded_connection(session).execute(select(table.c.tenant_id))
        assert {alpha, beta} <= set(found.scalars())
