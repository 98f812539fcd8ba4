"""Tenant isolation by construction: the one place where statements are scoped to a tenant.

The guard lives in the store's session class: ``app.database`` makes every session as a
``StoreSession``, whose class-level listeners below are the guard, so no session of the store
exists without it and there is nothing to install or forget (a CLI command, a job, a test).

A session is scoped with ``scope(session, tenant)``. From then on:

- every ORM SELECT, UPDATE and DELETE that touches a ``TenantOwned`` model gets
  ``tenant_id = :tenant`` added by SQLAlchemy's ``with_loader_criteria``, wherever the model
  appears (joins, subqueries, aliases, relationship loads);
- every ORM-enabled INSERT (``session.execute(insert(Model), rows)``) into a tenant-owned table
  must name the scoped tenant in each row; ``INSERT ... SELECT`` and upserts that update on
  conflict are refused (their ``tenant_id`` cannot be checked before they run), and so is the
  ORM's bulk UPDATE by primary key (``session.execute(update(Model), rows)``), which ignores
  added criteria;
- every new, changed or deleted ``TenantOwned`` row is stamped with, or checked against, the
  scoped tenant at flush.

A statement that reaches a tenant-owned table other than through its mapped class (the plain
``Table``, its columns, a ``table()`` clause, SQL text) is refused: the guard could not add the
tenant to it. A session that was never scoped refuses to touch tenant-owned rows at all,
unless it says ``cross_tenant(session)`` (operator jobs that sweep every tenant on purpose).
``StoreSession.connection()`` and the legacy ``bulk_*`` methods, which skip the ORM's events,
are refused too; ``unguarded_connection`` is the one named way around the guard.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn
from weakref import WeakKeyDictionary

from sqlalchemy import (
    Alias,
    BindParameter,
    ColumnClause,
    Connection,
    TableClause,
    TextClause,
    event,
)
from sqlalchemy.dialects.postgresql.dml import OnConflictDoNothing as PostgresDoNothing
from sqlalchemy.dialects.sqlite.dml import OnConflictDoNothing as SqliteDoNothing
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.annotation import Annotated

from app.models import Base, Tenant, TenantOwned

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
    if (current is not None and current != tenant_id) or session.info.get(_CROSS):
        raise TenancyViolation("a session is scoped to one tenant only, or cross-tenant")
    session.info[_TENANT] = tenant_id


def release(session: Session) -> Session:
    """Flush the scoped tenant's pending writes, then drop the scope (``idbridge apply``).

    One transaction may then work through several tenants in turn: each ``scope`` call that
    follows starts a new tenant. Rows are stamped and checked at flush against the tenant in
    scope, so flushing first means no write can cross the switch; the session then forgets the
    rows it loaded (``session.get`` answers from them without a query, so without the next
    tenant's criteria), and until the next ``scope`` it refuses tenant-owned rows again.
    """
    session.flush()
    session.expunge_all()
    session.info.pop(_TENANT, None)
    return session


def cross_tenant(session: Session) -> Session:
    """Allow ``session`` to reach every tenant's rows (operator jobs that sweep every tenant,
    never requests). A session is either this or scoped, never both: rows one loaded would
    otherwise be answered by ``session.get`` under the other."""
    if session.info.get(_TENANT) is not None:
        raise TenancyViolation("a session is scoped to one tenant only, or cross-tenant")
    session.info[_CROSS] = True
    return session


def unguarded_connection(session: Session) -> Connection:
    """The session's connection, in its transaction, with no tenant guard: for the few reads
    that need every tenant's rows inside a scoped transaction on purpose (the Redis reload of
    revocations). Each caller says why; nothing that answers a tenant may use it."""
    return Session.connection(session)


class StoreSession(Session):
    """The store's only session class (``app.database``): the listeners below are registered
    on it, so every session the store makes is guarded from its first statement."""

    def connection(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TenancyViolation(
            "a store session hands out no raw connection: its statements would skip the tenant "
            "guard (see tenancy.unguarded_connection)"
        )

    def bulk_save_objects(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TenancyViolation("bulk_save_objects skips the tenant guard: use add() or insert()")

    def bulk_insert_mappings(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TenancyViolation("bulk_insert_mappings skips the tenant guard: use insert()")

    def bulk_update_mappings(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TenancyViolation("bulk_update_mappings skips the tenant guard: use update()")


# --- what a statement reaches ----------------------------------------------------------------

_NOTHING, _MAPPED, _UNGUARDABLE = 0, 1, 2
_NONE: Mapping[str, Any] = {}
# Statements are immutable and most are built once at import (bench/: building costs more than
# running), so what one reaches is worked out once per statement object.
_REACH: WeakKeyDictionary[ClauseElement, int] = WeakKeyDictionary()


def _reach(statement: ClauseElement) -> int:
    if isinstance(statement, Annotated):  # the ORM re-annotates a prebuilt INSERT per call
        statement = statement._deannotate()
    reach = _REACH.get(statement)
    if reach is None:
        reach = _REACH[statement] = _walk(statement)
    return reach


def _walk(statement: ClauseElement) -> int:
    """``_MAPPED`` when tenant-owned tables are reached only through their mapped classes
    (``with_loader_criteria`` applies), ``_UNGUARDABLE`` when one is reached any other way
    (it would not), else ``_NOTHING``.

    An ORM element (annotated with its ``parententity``) stands for its tables: the plain
    tables and columns SQLAlchemy derives from it (implicit FROMs, the primary-key and
    relationship clauses of ``get`` and lazy loads) are covered by it. A plain one that no ORM
    element of the statement covers is unguardable; so is SQL text, which may say anything.
    """
    mapped = False
    plain: list[Any] = []
    covered: set[Any] = set()
    stack: list[Any] = [statement]
    while stack:
        element = stack.pop()
        entity = getattr(element, "_annotations", _NONE).get("parententity")
        if entity is not None:
            mapped = mapped or issubclass(entity.mapper.class_, TenantOwned)
            covered.update(getattr(element, "_from_objects", ()))
            continue
        if isinstance(element, TextClause):
            return _UNGUARDABLE
        if isinstance(element, ColumnClause):
            if _is_tenant_table(element.table):
                plain.append(element.table)
        elif _is_tenant_table(element):
            plain.append(element)
            continue
        stack.extend(element.get_children())
    if any(table not in covered for table in plain):
        return _UNGUARDABLE
    return _MAPPED if mapped else _NOTHING


def _is_tenant_table(element: Any) -> bool:
    while isinstance(element, Alias):  # ``Model.__table__.alias()``: the table underneath
        element = element.element
    return isinstance(element, TableClause) and element.name in _tenant_table_names(
        len(Base.metadata.tables)
    )


@functools.lru_cache(maxsize=1)
def _tenant_table_names(_tables: int) -> frozenset[str]:
    """The tables of every ``TenantOwned`` model, worked out again when a model is added (the
    argument is the number of tables), so models defined in other modules count too."""
    return frozenset(
        mapper.local_table.name
        for mapper in Base.registry.mappers
        if issubclass(mapper.class_, TenantOwned)
    )


# --- the guard -------------------------------------------------------------------------------


@event.listens_for(StoreSession, "do_orm_execute")
def _guard_statement(state: ORMExecuteState) -> None:
    reach = _reach(state.statement)
    if reach == _NOTHING:
        return
    info = state.session.info
    tenant_id = info.get(_TENANT)
    if tenant_id is None:
        if info.get(_CROSS):
            return
        raise TenancyViolation("a statement on tenant-owned rows outside a tenant scope")
    if reach == _UNGUARDABLE:
        raise TenancyViolation(
            "a tenant-owned table reached other than through its mapped class (a plain table, "
            "its columns or SQL text): the tenant guard cannot scope it"
        )
    if state.is_insert:
        _check_insert(state, tenant_id)
    elif state.is_executemany:  # ORM bulk UPDATE by primary key: the criteria do not apply
        raise TenancyViolation(
            "an UPDATE by primary keys of tenant-owned rows skips the tenant guard: use one "
            "UPDATE with a WHERE clause, or change the loaded rows"
        )
    else:
        state.statement = state.statement.options(_criteria(tenant_id))


@functools.lru_cache(maxsize=4096)
def _criteria(tenant_id: int) -> Any:
    """``tenant_id = :tenant`` on every ``TenantOwned`` entity, made once per tenant (making
    the option costs several times more than adding it to a statement)."""
    return with_loader_criteria(
        TenantOwned, lambda cls: cls.tenant_id == tenant_id, include_aliases=True
    )


def _check_insert(state: ORMExecuteState, tenant_id: int) -> None:
    """Every row an ORM-enabled INSERT writes names the scoped tenant, wherever it names it:
    in ``values()``, in the parameters (one dict, or a list for executemany), or both."""
    statement: Any = state.statement
    post = statement._post_values_clause
    if statement.select is not None or not (
        post is None or isinstance(post, PostgresDoNothing | SqliteDoNothing)
    ):
        raise TenancyViolation(
            "INSERT ... SELECT and upserts that update on conflict into tenant-owned tables "
            "are refused: their tenant cannot be checked before they run"
        )
    for named in _tenants_named(statement, state.parameters):
        if not named or any(value != tenant_id for value in named):
            raise TenancyViolation("an INSERT of a row for another tenant than the session's")


def _tenants_named(statement: Any, parameters: Any) -> Iterator[list[Any]]:
    """For each row the INSERT writes, every ``tenant_id`` value it gives."""
    if statement._multi_values:
        for rows in statement._multi_values:
            for values in rows:
                yield [_value(v, {}) for c, v in values.items() if _key(c) == "tenant_id"]
        return
    given = [v for c, v in (statement._values or {}).items() if _key(c) == "tenant_id"]
    for params in parameters if isinstance(parameters, list) else [parameters or {}]:
        named = [_value(value, params) for value in given]
        yield [*named, params["tenant_id"]] if "tenant_id" in params else named


def _key(column: Any) -> str:
    return column if isinstance(column, str) else column.key


_UNCHECKABLE = object()  # an SQL expression for a tenant id: equal to none, so refused


def _value(value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, BindParameter):
        return params.get(value.key, value.value)
    return _UNCHECKABLE if isinstance(value, ClauseElement) else value


@event.listens_for(StoreSession, "before_flush")
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
