"""The scim2-server storage over idbridge's store: one tenant-scoped SQLAlchemy session.

scim2-server (``ScimHandler``) runs the protocol (validation, PUT and PATCH application,
preconditions, Bulk); this class reads and writes rows through ``app.provisioning``. Searches
filter (``scim.filters``), count and page in SQL, ordered by primary key so pages are stable.
Domain errors become the SCIM exceptions of RFC 7644 §3.12 here, so a Bulk operation reports
them in its own result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from scim2_models import (
    Context,
    Group,
    InvalidValueException,
    NotFoundException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    SCIMException,
    SearchRequest,
    UniquenessException,
)
from scim2_server.storage import ScimStorage, SearchPage
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import provisioning
from app.errors import Conflict, DomainError, InvalidInput, NotFound
from app.models import Group as GroupRow
from app.models import GroupMember, Tenant
from app.models import User as UserRow
from scim import filters
from scim.resources import UserResource

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def etag(version: int) -> str:
    """A weak ETag from the row's version counter (RFC 7644 §3.14)."""
    return f'W/"{version}"'


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def scim_error(error: DomainError) -> SCIMException:
    """A domain error in RFC 7644 §3.12 terms."""
    if isinstance(error, Conflict):
        return UniquenessException(detail=error.message)
    if isinstance(error, NotFound):
        return NotFoundException(detail=error.message)
    if isinstance(error, InvalidInput):
        return InvalidValueException(detail=error.message)
    raise error  # StoreUnavailable and the like: rendered by the view


class SqlStorage(ScimStorage):
    """Users and Groups of one tenant (the session is already scoped to it). ``read_only``:
    the session is a read (a GET), so an operation has nothing to undo."""

    def __init__(self, session: Session, tenant: Tenant, read_only: bool = False) -> None:
        self.session = session
        self.tenant = tenant
        self.read_only = read_only

    # -- reads ---------------------------------------------------------------------------

    def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        if resource_type.name == "User":
            return self.user_resource(self._user(resource_id))
        return self.group_resource(self._group(resource_id))

    def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
    ) -> SearchPage:
        """Filter, count and page in SQL; ``startIndex`` below 1 is taken as 1 (RFC 7644
        §3.4.2.4) and ``count`` is already bounded by the service. A page that runs out before
        ``count`` holds the last match, so its total needs no COUNT query: an ``eq`` filter on a
        unique attribute costs one query, not two."""
        start = max(search_request.start_index or 1, 1)
        count = max(search_request.count if search_request.count is not None else 100, 0)
        models = [UserRow if rt.name == "User" else GroupRow for rt in resource_types]
        # At the root (RFC 7644 §3.4.2.1) the types are one collection: users, then groups.
        resources: list[Resource[Any]] = []
        total = 0
        offset = start - 1
        for model in models:
            statement = select(model)
            if search_request.filter is not None:
                statement = statement.where(filters.where(model, search_request.filter.ast))
            wanted = count - len(resources)
            rows = []
            if wanted > 0:
                page = statement.order_by(model.id).offset(offset).limit(wanted)
                rows = list(self.session.scalars(page))
            if wanted > 0 and len(rows) < wanted and (rows or offset == 0):
                matches = offset + len(rows)
            else:
                counted = select(func.count()).select_from(statement.subquery())
                matches = self.session.scalar(counted) or 0
            resources += self._resources(model, rows) if rows else []
            total += matches
            offset = max(offset - matches, 0)
        return SearchPage(total=total, resources=resources)

    def _resources(self, model: Any, rows: list[Any]) -> list[Resource[Any]]:
        if model is UserRow:
            groups = self._groups_of([row.id for row in rows])
            return [self.user_resource(row, groups.get(row.id, [])) for row in rows]
        members = self._members_of([row.id for row in rows])
        return [self.group_resource(row, members.get(row.id, [])) for row in rows]

    def _locked(self, statement: Any) -> Any:
        """In a write, the row read is locked until commit (``FOR UPDATE``; SQLite's writer
        already holds the database): scim2-server's PATCH and PUT compare the version they
        read with the one they write, so two concurrent PATCHes without ``If-Match`` would
        otherwise answer 412 on PostgreSQL instead of applying one after the other."""
        return statement if self.read_only else statement.with_for_update()

    def _user(self, scim_id: str) -> UserRow:
        statement = self._locked(select(UserRow).where(UserRow.scim_id == scim_id))
        row = self.session.scalars(statement).first()
        if row is None:
            raise NotFoundException(detail=f"no user has the id {scim_id!r}")
        return row

    def _group(self, scim_id: str) -> GroupRow:
        statement = self._locked(select(GroupRow).where(GroupRow.scim_id == scim_id))
        row = self.session.scalars(statement).first()
        if row is None:
            raise NotFoundException(detail=f"no group has the id {scim_id!r}")
        return row

    def _groups_of(self, user_pks: list[int]) -> dict[int, list[dict[str, Any]]]:
        rows = self.session.execute(
            select(GroupMember.user_pk, GroupRow.scim_id, GroupRow.display_name)
            .join(GroupRow, GroupRow.id == GroupMember.group_pk)
            .where(GroupMember.user_pk.in_(user_pks))
            .order_by(GroupRow.id)
        )
        result: dict[int, list[dict[str, Any]]] = {}
        for user_pk, scim_id, display in rows:
            result.setdefault(user_pk, []).append(
                {"value": scim_id, "$ref": f"Groups/{scim_id}", "display": display}
            )
        return result

    def _members_of(self, group_pks: list[int]) -> dict[int, list[dict[str, Any]]]:
        rows = self.session.execute(
            select(GroupMember.group_pk, UserRow.scim_id, GroupMember.display)
            .join(UserRow, UserRow.id == GroupMember.user_pk)
            .where(GroupMember.group_pk.in_(group_pks))
            .order_by(UserRow.id)
        )
        result: dict[int, list[dict[str, Any]]] = {}
        for group_pk, scim_id, display in rows:
            member = {"value": scim_id, "$ref": f"Users/{scim_id}", "type": "User"}
            result.setdefault(group_pk, []).append(
                member | ({"display": display} if display else {})
            )
        return result

    def user_resource(
        self, row: UserRow, groups: list[dict[str, Any]] | None = None
    ) -> Resource[Any]:
        data = dict(row.scim)
        extensions = [key for key in data if key.startswith("urn:")]
        data |= {
            "schemas": [CORE_USER, *extensions],
            "id": row.scim_id,
            "meta": self._meta("User", row.created_at, row.updated_at, row.version),
        }
        if groups is None:
            groups = self._groups_of([row.id]).get(row.id, [])
        if groups:
            data["groups"] = groups
        return UserResource.model_validate(data, scim_ctx=None)

    def group_resource(
        self, row: GroupRow, members: list[dict[str, Any]] | None = None
    ) -> Resource[Any]:
        data = dict(row.scim) | {
            "schemas": [CORE_GROUP],
            "id": row.scim_id,
            "meta": self._meta("Group", row.created_at, row.updated_at, row.version),
        }
        if members is None:
            members = self._members_of([row.id]).get(row.id, [])
        if members:
            data["members"] = members
        return Group.model_validate(data, scim_ctx=None)

    @staticmethod
    def _meta(kind: str, created: datetime, modified: datetime, version: int) -> dict[str, Any]:
        return {
            "resourceType": kind,
            "created": _iso(created),
            "lastModified": _iso(modified),
            "version": etag(version),
        }

    # -- writes --------------------------------------------------------------------------

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        data = resource.model_dump(scim_ctx=Context.DEFAULT)
        try:
            if resource_type.name == "User":
                row = provisioning.save_user(self.session, self.tenant, None, data)
                return self.user_resource(row, [])
            group = provisioning.save_group(self.session, None, data, _members(data))
            return self.group_resource(group)
        except DomainError as error:
            raise scim_error(error) from error
        except IntegrityError as error:  # a concurrent writer won the race for a unique value
            raise UniquenessException(detail="a unique value is already taken") from error

    def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
    ) -> Resource[Any]:
        data = resource.model_dump(scim_ctx=Context.DEFAULT)
        try:
            if resource_type.name == "User":
                user = self._user(str(resource.id))
                self._check_version(user.version, expected_version)
                user = provisioning.save_user(self.session, self.tenant, user, data)
                return self.user_resource(user)
            group = self._group(str(resource.id))
            self._check_version(group.version, expected_version)
            group = provisioning.save_group(self.session, group, data, _members(data))
            return self.group_resource(group)
        except DomainError as error:
            raise scim_error(error) from error
        except IntegrityError as error:  # a concurrent writer won the race for a unique value
            raise UniquenessException(detail="a unique value is already taken") from error

    def delete(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> None:
        if resource_type.name == "User":
            user = self._user(resource_id)
            self._check_version(user.version, expected_version)
            provisioning.delete_user(self.session, user)
        else:
            group = self._group(resource_id)
            self._check_version(group.version, expected_version)
            provisioning.delete_group(self.session, group)

    @staticmethod
    def _check_version(version: int, expected: str | None) -> None:
        if expected is not None and expected != etag(version):
            raise PreconditionFailedException(detail="the resource changed meanwhile")

    @contextmanager
    def operation(self) -> Iterator[None]:
        """A savepoint per operation: a failed Bulk operation leaves no trace (RFC 7644
        §3.7), the others stay; the request's transaction commits them all. A read takes no
        savepoint: SAVEPOINT and RELEASE are two round trips a GET does not need."""
        if self.read_only:
            yield
            return
        with self.session.begin_nested():
            yield


def _members(data: dict[str, Any]) -> dict[str, str | None]:
    return {str(m["value"]): m.get("display") for m in data.get("members") or [] if m.get("value")}
