"""Tenant isolation by construction: the one place where queries are scoped to a tenant.

A session is scoped with ``scope(session, tenant)``. From then on every ORM query that touches a
``TenantOwned`` model gets ``tenant_id = :tenant`` added by SQLAlchemy's ``with_loader_criteria``
(SELECT, and ORM UPDATE and DELETE), and every new or changed ``TenantOwned`` row is stamped
with, or checked against, that tenant before flush. A session that was never scoped refuses to
touch tenant-owned rows at all, unless it says ``cross_tenant(session)`` (operator jobs that
sweep every tenant on purpose). Services therefore cannot forget the filter: there is none to
remember.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from app.models import Tenant, TenantOwned

_TENANT = "idbridge.tenant_id"
TENANT_KEY = _TENANT  # where ``session.info`` keeps the scoped tenant's id
_CROSS = "idbridge.cross_tenant"


class TenancyViolation(RuntimeError):
    """Code tried to read or write tenant-owned rows without a tenant scope: a bug, never input."""


def scope(session: Session, tenant: Tenant) -> Tenant:
    """Scope ``session`` to ``tenant`` for the rest of its transaction."""
    scope_id(session, tenant.id)
    return tenant


def scope_id(session: Session, tenant_id: int) -> None:
    """``scope`` by id: for a second transaction of a request that already found its tenant
    (no second lookup of the same row)."""
    current = session.info.get(_TENANT)
    if current is not None and current != tenant_id:
        raise TenancyViolation("a session is scoped to one tenant only")
    session.info[_TENANT] = tenant_id


def release(session: Session) -> Session:
    """Flush the scoped tenant's pending writes, then drop the scope (``idbridge apply``).

    One transaction may then work through several tenants in turn: each ``scope`` call that
    follows starts a new tenant. Rows are stamped and checked at flush against the tenant in
    scope, so flushing first means no write can cross the switch; until the next ``scope`` the
    session refuses tenant-owned rows again.
    """
    session.flush()
    session.info.pop(_TENANT, None)
    return session


def cross_tenant(session: Session) -> Session:
    """Allow ``session`` to read every tenant's rows (operator-wide jobs, never requests)."""
    session.info[_CROSS] = True
    return session


def _touches_tenant_rows(state: ORMExecuteState) -> bool:
    return any(issubclass(mapper.class_, TenantOwned) for mapper in state.all_mappers)


def install(session_class: type[Session] = Session) -> None:
    """Register the guard on every ``Session``; idempotent (every app calls it, and SQLAlchemy
    would otherwise stack one more listener per call)."""
    for name, listener in (("do_orm_execute", _scope_statement), ("before_flush", _stamp_rows)):
        if not event.contains(session_class, name, listener):
            event.listen(session_class, name, listener)


def _scope_statement(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    tenant_id = state.session.info.get(_TENANT)
    if tenant_id is None:
        if state.session.info.get(_CROSS) or not _touches_tenant_rows(state):
            return
        raise TenancyViolation("query on tenant-owned rows outside a tenant scope")
    state.statement = state.statement.options(
        with_loader_criteria(
            TenantOwned,
            lambda cls: cls.tenant_id == tenant_id,
            include_aliases=True,
        )
    )


def _stamp_rows(session: Session, _context: Any, _instances: Any) -> None:
    tenant_id = session.info.get(_TENANT)
    for row in list(session.new) + list(session.dirty) + list(session.deleted):
        if not isinstance(row, TenantOwned):
            continue
        if tenant_id is None:
            if session.info.get(_CROSS):
                continue
            raise TenancyViolation("write to tenant-owned rows outside a tenant scope")
        if row.tenant_id is None:
            row.tenant_id = tenant_id
        elif row.tenant_id != tenant_id:
            raise TenancyViolation("write to another tenant's row")
