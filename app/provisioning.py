"""Provisioning: SCIM users and groups become the rows of the store (CONTRACT §1 and §4).

The SCIM protocol package (``scim/``) validates what an identity provider sent and hands this
module the resource as a plain SCIM JSON object (camelCase names, URN-keyed extensions). This
module decides what it means for the tenant: which attribute is the User ``id`` (the tenant's
``user_id_attribute``, default ``externalId``), which carries the ``customer``, which email is
the email, and what must stay unique. Deactivation and deletion end the user's access through
the one hook, ``app.revocation.revoke``, in the same transaction.

Errors are domain errors: ``Conflict`` (a value another user or group holds) and
``InvalidInput`` (a required value missing); the protocol package renders them.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app import mappings, revocation
from app.errors import Conflict, InvalidInput
from app.models import Group, GroupMember, Tenant, User
from app.users import canonical_email, canonical_user_name

IDBRIDGE_USER_SCHEMA = "urn:ietf:params:scim:schemas:extension:idbridge:2.0:User"
# What the store never keeps in ``scim``: the server's own attributes, derived ones, secrets.
NOT_STORED = {"id", "meta", "password", "groups", "members", "schemas"}


def new_scim_id() -> str:
    return str(uuid.uuid4())


def attribute_value(data: dict[str, Any], attribute: str) -> Any:
    """The value of a SCIM attribute path (``externalId``, ``name.givenName``, or a
    URN-qualified ``urn:...:User:customer``) in a SCIM JSON object; names compare
    case-insensitively (RFC 7643 §2.1)."""
    container: Any = data
    path = attribute
    if ":" in attribute:
        urn, _, path = attribute.rpartition(":")
        container = _get(data, urn)
        if container is None and urn.lower().endswith(":user") and "extension" not in urn:
            container = data  # the core schema's URN names top-level attributes
    for part in path.split("."):
        if not isinstance(container, dict):
            return None
        container = _get(container, part)
    return container


def _get(data: dict[str, Any], name: str) -> Any:
    for key, value in data.items():
        if key.lower() == name.lower():
            return value
    return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def primary_email(data: dict[str, Any]) -> str | None:
    """The primary email, else the first one (CONTRACT §1)."""
    emails = [e for e in data.get("emails") or [] if isinstance(e, dict) and _text(e.get("value"))]
    chosen = next((e for e in emails if e.get("primary") is True), emails[0] if emails else None)
    return _text(chosen.get("value")) if chosen else None


def save_user(session: Session, tenant: Tenant, user: User | None, data: dict[str, Any]) -> User:
    """Create (``user`` is None) or replace a user from its SCIM JSON object; one flush.

    Raises ``Conflict`` when userName (case-insensitively), the User id, the customer or the
    canonical email is another user's: an email that matches an existing account is never
    adopted silently (THREATS.md, SCIM).
    """
    stored = {key: value for key, value in data.items() if key not in NOT_STORED}
    user_name = _text(data.get("userName"))
    if user_name is None:
        raise InvalidInput("userName is required", "userName")
    scim_id = user.scim_id if user else new_scim_id()
    subject = _text(attribute_value(data, tenant.user_id_attribute)) or scim_id
    customer = _text(attribute_value(data, tenant.customer_attribute))
    if customer is None and tenant.customer_required:
        raise InvalidInput(
            f"the user has no value for {tenant.customer_attribute}, which this tenant requires",
            tenant.customer_attribute,
        )
    email = primary_email(data)
    values = {
        "subject": subject,
        "external_id": _text(data.get("externalId")),
        "user_name": user_name,
        "user_name_canonical": canonical_user_name(user_name),
        "customer": customer,
        "email": email,
        "email_canonical": canonical_email(email) if email else None,
        "active": data.get("active") is not False,
        "scim": stored,
    }
    _ensure_unique_user(session, user, values)
    if user is None:
        user = User(scim_id=scim_id, **values)
        session.add(user)
    else:
        was_active = user.active
        if values["email_canonical"] != user.email_canonical:
            user.email_verified = False  # a new address was never verified
        if values["subject"] != user.subject:
            revocation.revoke(session, user.subject, "deleted")
            mappings.forget_scim_subject(session, user.subject)
        for name, value in values.items():
            setattr(user, name, value)
        user.version += 1
        if was_active and not user.active:
            revocation.revoke(session, user.subject, "deactivated")
    session.flush()
    identities = attribute_value(data, IDBRIDGE_USER_SCHEMA + ":upstreamIdentities")
    mappings.sync_from_scim(session, user.subject, identities)
    return user


def _ensure_unique_user(session: Session, user: User | None, values: dict[str, Any]) -> None:
    checks = (
        ("userName", User.user_name_canonical, values["user_name_canonical"]),
        ("id", User.subject, values["subject"]),
        ("customer", User.customer, values["customer"]),
        ("emails", User.email_canonical, values["email_canonical"]),
    )
    for field, column, value in checks:
        if value is None:
            continue
        statement = select(User.id).where(column == value)
        if user is not None:
            statement = statement.where(User.id != user.id)
        if session.scalar(statement.limit(1)) is not None:
            raise Conflict(f"another user already has this {field}", field)


def delete_user(session: Session, user: User) -> None:
    """Delete the user and end its access at once (the revocation hook, same transaction)."""
    revocation.revoke(session, user.subject, "deleted")
    mappings.forget_scim_subject(session, user.subject)
    session.execute(delete(GroupMember).where(GroupMember.user_pk == user.id))
    session.delete(user)
    session.flush()


def save_group(
    session: Session, group: Group | None, data: dict[str, Any], members: dict[str, str | None]
) -> Group:
    """Create or replace a group and its members: SCIM ids of users of the same tenant, each
    with the ``display`` the identity provider gave (kept as given)."""
    display_name = _text(data.get("displayName"))
    if display_name is None:
        raise InvalidInput("displayName is required", "displayName")
    canonical = canonical_user_name(display_name)
    taken = select(Group.id).where(Group.display_name_canonical == canonical)
    if group is not None:
        taken = taken.where(Group.id != group.id)
    if session.scalar(taken.limit(1)) is not None:
        raise Conflict("another group already has this displayName", "displayName")
    wanted = set(members)
    users = dict(
        session.execute(select(User.scim_id, User.id).where(User.scim_id.in_(wanted))).all()
    )
    unknown = sorted(wanted - users.keys())
    if unknown:
        raise InvalidInput(f"no user has the id {unknown[0]!r}", "members")
    stored = {key: value for key, value in data.items() if key not in NOT_STORED}
    if group is None:
        group = Group(scim_id=new_scim_id(), display_name="", display_name_canonical="")
        session.add(group)
    else:
        group.version += 1
    group.display_name, group.display_name_canonical = display_name, canonical
    group.external_id = _text(data.get("externalId"))
    group.scim = stored
    session.flush()
    current = {
        row.user_pk: row
        for row in session.scalars(select(GroupMember).where(GroupMember.group_pk == group.id))
    }
    target = {users[scim_id]: display for scim_id, display in members.items()}
    for user_pk, row in current.items():
        if user_pk not in target:
            session.delete(row)
        elif row.display != target[user_pk]:
            row.display = target[user_pk]
    session.add_all(
        GroupMember(group_pk=group.id, user_pk=pk, display=display)
        for pk, display in target.items()
        if pk not in current
    )
    session.flush()
    return group


def delete_group(session: Session, group: Group) -> None:
    session.execute(delete(GroupMember).where(GroupMember.group_pk == group.id))
    session.delete(group)
    session.flush()
