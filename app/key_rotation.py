"""Scheduled rotation of the tenants' signing keys (``app.signing``), with APScheduler.

``rotate_due_keys`` is the job: for each tenant whose newest key is older than ``MAX_KEY_AGE``
and which has no key waiting to activate, it calls ``signing.rotate`` (publish now, sign after
``PUBLISH_LEAD``, retire the old key once its tokens have expired). It takes settings, not
objects, opens its own store, and runs synchronously in tests. Each tenant is rotated in its
own transaction with the tenant row locked, so two instances running the job at once rotate a
tenant once. ``app.jobs`` runs it hourly, on one instance at a time.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from app import signing, tenancy
from app.crypto import Keyring
from app.database import Database
from app.models import SigningKey, Tenant, utcnow
from app.settings import Settings

MAX_KEY_AGE = timedelta(days=90)
CHECK_EVERY = timedelta(hours=1)

log = logging.getLogger("idbridge.keys")


def rotate_due_keys(settings: Settings, max_age: timedelta = MAX_KEY_AGE) -> list[str]:
    """Rotate every tenant's key that is due; return the slugs rotated."""
    db = Database(settings)
    keyring = Keyring(settings.secret_key)
    rotated = []
    try:
        with db.read() as session:
            tenant_ids = list(session.scalars(select(Tenant.id).order_by(Tenant.id)))
        for tenant_id in tenant_ids:
            with db.transaction() as session:
                tenant = session.scalars(
                    select(Tenant).where(Tenant.id == tenant_id).with_for_update()
                ).first()
                if tenant is None:
                    continue
                tenancy.scope(session, tenant)
                pending = session.scalar(
                    select(SigningKey.id).where(SigningKey.activates_at > utcnow()).limit(1)
                )
                has_keys = bool(signing.published(session))
                if has_keys and not pending and signing.due_for_rotation(session, max_age):
                    key = signing.rotate(session, keyring, tenant)
                    log.info("tenant %s: new signing key %s published", tenant.slug, key.kid)
                    rotated.append(tenant.slug)
    finally:
        db.dispose()
    return rotated
