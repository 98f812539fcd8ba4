"""The users of the SCIM benchmark, the same on both servers: deterministic ids and names, so
a request for user ``i`` means the same user to idbridge and to the peer.

idbridge is seeded through the storage layer (bulk ``INSERT`` through SQLAlchemy, in batches);
the peer seeds itself at start from ``peer_user`` (``bench.scim_peer``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert

from app import create_app, credentials, migrate, runtime, tenants
from app.models import User
from app.schemas import TenantSchema
from app.settings import Settings

TENANT = "scimbench"
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
BATCH = 5000
NAMESPACE = uuid.UUID("5b1f0d0e-9b00-4c1e-8a5e-000000000009")


def user_id(index: int) -> str:
    return str(uuid.uuid5(NAMESPACE, str(index)))


def user_name(index: int) -> str:
    return f"user{index:07d}@example.com"


def email(index: int) -> str:
    return f"mail{index:07d}@example.org"


def attributes(index: int) -> dict[str, Any]:
    """The SCIM attributes of seeded user ``index`` (what both servers store)."""
    return {
        "userName": user_name(index),
        "externalId": f"ext{index:07d}",
        "displayName": f"User {index}",
        "emails": [{"value": email(index), "type": "work", "primary": True}],
        "active": True,
    }


def peer_user(index: int) -> dict[str, Any]:
    """Seeded user ``index`` as the reference server stores it (id and meta included)."""
    now = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    return attributes(index) | {
        "schemas": [CORE_USER],
        "id": user_id(index),
        "meta": {"resourceType": "User", "created": now, "lastModified": now, "version": 'W/"0"'},
    }


def create_tenant(settings: Settings, token: str) -> None:
    """Migrate the empty database and create the tenant with its SCIM token."""
    flask_app = create_app(settings)
    rt = runtime.of(flask_app)
    try:
        migrate.upgrade(rt.db)
        with rt.db.transaction() as session:
            tenant = tenants.create(
                session,
                rt.keyring,
                TenantSchema().load({"slug": TENANT, "users": {"customer_required": False}}),
            )
            credentials.add_scim_token(session, rt.keyring, tenant, token)
    finally:
        rt.db.dispose()


def add_users(settings: Settings, first: int, last: int) -> None:
    """Bulk-insert users ``first`` to ``last - 1`` through SQLAlchemy, one transaction."""
    flask_app = create_app(settings)
    rt = runtime.of(flask_app)
    try:
        with rt.db.transaction() as session:
            tenant_id = tenants.find(session, TENANT).id
            for start in range(first, last, BATCH):
                session.execute(
                    insert(User),
                    [row(tenant_id, index) for index in range(start, min(start + BATCH, last))],
                )
    finally:
        rt.db.dispose()


def row(tenant_id: int, index: int) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "scim_id": user_id(index),
        "subject": f"ext{index:07d}",
        "external_id": f"ext{index:07d}",
        "user_name": user_name(index),
        "user_name_canonical": user_name(index),
        "email": email(index),
        "email_canonical": email(index),
        "scim": attributes(index),
    }
