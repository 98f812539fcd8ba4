"""SCIM filters (RFC 7644 §3.4.2.2) translated to SQL with the scim2-models filter visitor.

Every filter becomes one SQLAlchemy expression with bound parameters: nothing is evaluated row
by row in Python, and LIKE patterns escape ``%``, ``_`` and the escape character. Attributes
idbridge keeps in columns (``userName``, ``externalId``, ``emails.value`` through the canonical
email, ``active``, ``displayName`` of groups, ``meta.*``) use those indexed columns; other
single-valued attributes are read from the stored SCIM JSON. A multi-valued attribute not
listed here, or a filter on ``password``, is refused with ``invalidFilter``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scim2_models import InvalidFilterException
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from scim2_models.path.visitor import FilterVisitor
from sqlalchemy import ColumnElement, and_, exists, false, func, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement as Column

from app.models import Group, GroupMember, User
from app.users import canonical_email, canonical_user_name

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:user"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:group"
ESCAPE = "\\"


@dataclass(frozen=True)
class Field:
    """How one SCIM attribute is compared in SQL: its column and the form of its values."""

    column: Any
    prepare: Callable[[Any], Any] = lambda value: value
    kind: str = "string"  # string | boolean | datetime


def _parse_datetime(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidFilterException(detail=f"{value!r} is not a dateTime") from exc


USER_FIELDS: dict[str, Field] = {
    "id": Field(User.scim_id),
    "username": Field(User.user_name_canonical, canonical_user_name),
    "externalid": Field(User.external_id),
    "emails": Field(User.email_canonical, canonical_email),
    "emails.value": Field(User.email_canonical, canonical_email),
    "active": Field(User.active, kind="boolean"),
    "meta.created": Field(User.created_at, _parse_datetime, "datetime"),
    "meta.lastmodified": Field(User.updated_at, _parse_datetime, "datetime"),
    "urn:ietf:params:scim:schemas:extension:idbridge:2.0:user:customer": Field(User.customer),
}
GROUP_FIELDS: dict[str, Field] = {
    "id": Field(Group.scim_id),
    "displayname": Field(Group.display_name_canonical, canonical_user_name),
    "externalid": Field(Group.external_id),
    "meta.created": Field(Group.created_at, _parse_datetime, "datetime"),
    "meta.lastmodified": Field(Group.updated_at, _parse_datetime, "datetime"),
}
# Multi-valued attributes kept in JSON: no SQL form, so refused rather than half-answered.
MULTI_VALUED = {
    "emails", "phonenumbers", "ims", "photos", "addresses", "groups", "entitlements", "roles",
    "x509certificates", "members", "upstreamidentities", "schemas",
}  # fmt: skip
SENSITIVE = {"password"}


def _escape_like(value: str) -> str:
    return value.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")


class SqlFilter(FilterVisitor[ColumnElement[bool]]):
    """Build a WHERE clause for ``User`` or ``Group`` from a parsed filter."""

    def __init__(self, model: type[User] | type[Group]) -> None:
        self.model = model
        self.fields = USER_FIELDS if model is User else GROUP_FIELDS
        self.core = CORE_USER if model is User else CORE_GROUP

    def _key(self, path: AttrPath, sub_attr: str | None = None) -> tuple[str, list[str]]:
        """The lookup key of an attribute, and its JSON path in ``scim``."""
        uri = (path.uri or "").lower()
        names = [path.attr] + ([path.sub_attr] if path.sub_attr else [])
        names += [sub_attr] if sub_attr else []
        if path.attr.lower() in SENSITIVE:
            raise InvalidFilterException(detail="password cannot be filtered on")
        dotted = ".".join(name.lower() for name in names)
        if uri and uri != self.core:
            return f"{uri}:{dotted}", [path.uri or "", *names]
        return dotted, names

    def field(self, path: AttrPath, sub_attr: str | None = None) -> Field:
        key, json_path = self._key(path, sub_attr)
        if key in self.fields:
            return self.fields[key]
        if json_path[0].lower() in MULTI_VALUED or key.split(".")[0] in MULTI_VALUED:
            raise InvalidFilterException(detail=f"filtering on {key} is not supported")
        stored = self.model.scim
        for name in json_path:
            stored = stored[name]
        return Field(func.lower(stored.as_string()), lambda value: str(value).lower())

    def compare(self, field: Field, op: CompareOperator, value: Any) -> ColumnElement[bool]:
        column = field.column
        if value is None:
            if op is CompareOperator.eq:
                return column.is_(None)
            if op is CompareOperator.ne:
                return column.is_not(None)
            raise InvalidFilterException(detail="null only compares with eq or ne")
        if field.kind == "boolean":
            if not isinstance(value, bool) or op not in (CompareOperator.eq, CompareOperator.ne):
                raise InvalidFilterException(detail="a boolean compares with eq or ne to a boolean")
            return column.is_(value) if op is CompareOperator.eq else column.is_not(value)
        if isinstance(value, bool):
            raise InvalidFilterException(detail="a string attribute compared with a boolean")
        prepared = field.prepare(value)
        if op in (CompareOperator.co, CompareOperator.sw, CompareOperator.ew):
            if field.kind != "string":
                raise InvalidFilterException(detail=f"{op.value} needs a string attribute")
            pattern = _escape_like(str(prepared))
            pattern = {"co": f"%{pattern}%", "sw": f"{pattern}%", "ew": f"%{pattern}"}[op.value]
            return column.like(pattern, escape=ESCAPE)
        operators: dict[CompareOperator, Callable[[Column[Any]], ColumnElement[bool]]] = {
            CompareOperator.eq: lambda c: c == prepared,
            CompareOperator.ne: lambda c: or_(c != prepared, c.is_(None)),
            CompareOperator.gt: lambda c: c > prepared,
            CompareOperator.ge: lambda c: c >= prepared,
            CompareOperator.lt: lambda c: c < prepared,
            CompareOperator.le: lambda c: c <= prepared,
        }
        return operators[op](column)

    def visit_comparison(self, node: Comparison) -> ColumnElement[bool]:
        if self.model is Group and node.attr_path.attr.lower() == "members":
            return self._member(node.attr_path.sub_attr, node.op, node.value)
        return self.compare(self.field(node.attr_path), node.op, node.value)

    def visit_present(self, node: Present) -> ColumnElement[bool]:
        if self.model is Group and node.attr_path.attr.lower() == "members":
            return exists().where(GroupMember.group_pk == Group.id)
        field = self.field(node.attr_path)
        if field.kind == "string":
            return and_(field.column.is_not(None), field.column != "")
        return field.column.is_not(None)

    def visit_not(self, node: Not) -> ColumnElement[bool]:
        return not_(self.visit(node.expr))

    def visit_logical_expr(self, node: LogicalExpr) -> ColumnElement[bool]:
        terms = [self.visit(term) for term in node.terms]
        return and_(true(), *terms) if node.op is LogicalOperator.and_ else or_(false(), *terms)

    def visit_value_path(self, node: ValuePath) -> ColumnElement[bool]:
        """``emails[value eq "x"]`` and ``members[value eq "id"]``: only the sub-attribute
        idbridge indexes can be selected on."""
        attr = node.attr_path
        inner = node.val_filter
        if not isinstance(inner, Comparison) or inner.attr_path.attr.lower() != "value":
            raise InvalidFilterException(
                detail=f'only {attr.attr}[value op "..."] is supported in a filter'
            )
        if self.model is Group and attr.attr.lower() == "members":
            return self._member("value", inner.op, inner.value)
        return self.compare(self.field(attr, "value"), inner.op, inner.value)

    def _member(self, sub_attr: str | None, op: CompareOperator, value: Any) -> ColumnElement[bool]:
        if (sub_attr or "value").lower() != "value" or op is not CompareOperator.eq:
            raise InvalidFilterException(detail='only members.value eq "..." is supported')
        member = (
            select(GroupMember.id)
            .join(User, User.id == GroupMember.user_pk)
            .where(GroupMember.group_pk == Group.id, User.scim_id == str(value))
        )
        return exists(member)


def where(model: type[User] | type[Group], ast: Any) -> ColumnElement[bool]:
    """The WHERE clause of a parsed filter, for ``model``."""
    return SqlFilter(model).visit(ast)
