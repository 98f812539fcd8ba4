"""A store racing a revocation (``app.token_cache.store_on``), on both caches and both stores:
the exchange has re-checked grant and user and not committed yet when the revocation runs.
The revocation must wait for the store and purge it, or the store wait and its re-check
refuse; the token is never left cached. Without the advisory locks this fails on PostgreSQL
(SQLite serialises every write transaction)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from app import clients, integrations, runtime, tenancy, tenants, token_cache
from app.models import Grant, User
from app.schemas import ClientSchema, IntegrationSchema
from app.upstream import UpstreamToken
from tests import token_cache_support
from tests.token_cache_support import key_of

store = token_cache_support.store


def _seed_grant(app) -> tuple[int, int]:
    rt = runtime.of(app)
    with rt.db.transaction() as session:
        tenant = tenants.find(session, "acme")
        tenancy.scope(session, tenant)
        integration = integrations.create(
            session,
            rt.keyring,
            tenant,
            IntegrationSchema().load({"name": "snowflake-prod", "kind": "jwt", "audience": "x"}),
        )
        client, _ = clients.create(
            session, rt.keyring, tenant, ClientSchema().load({"client_id": "broker"})
        )
        grant, _ = integrations.grant(session, client, integration)
        session.add(
            User(scim_id="scim-1", subject="00u1", user_name="ada", user_name_canonical="ada")
        )
        session.flush()
        return tenant.id, grant.id


def _revoke_grant(session, grant_id: int) -> None:
    integrations.revoke(session.get(Grant, grant_id))


def _block_user(session, grant_id: int) -> None:
    user = session.scalars(select(User).where(User.subject == "00u1")).one()
    user.operator_blocked = True
    token_cache.purge_user_on(session, user.tenant_id, user.subject)


def _grant_and_user_active(session, grant_id: int) -> None:
    grant = session.get(Grant, grant_id)
    user = session.scalars(select(User).where(User.subject == "00u1")).one()
    if grant.revoked_at is not None or user.blocked:
        raise PermissionError("revoked")


@pytest.mark.parametrize("revoke", [_revoke_grant, _block_user])
def test_a_token_obtained_before_a_revocation_is_never_stored_after_it(store, app, revoke):
    """The exchange re-checked (grant active, user not blocked) and has not committed yet when
    the revocation runs: the revocation waits for the store and purges it, or the store waits
    and its re-check refuses; the token is never left cached."""
    tenant_id, grant_id = _seed_grant(app)
    exchanging, revoking = store.instance(), store.instance()
    key = key_of(store)._replace(tenant_id=tenant_id)
    checked, go = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def still_valid(session) -> None:
        _grant_and_user_active(session, grant_id)
        checked.set()
        go.wait(5)  # the revocation starts here, between the re-check and the commit

    def exchange() -> None:
        try:
            with exchanging.cache.flight(key) as flight, exchanging.db.transaction() as session:
                tenancy.scope_id(session, tenant_id)
                token = UpstreamToken("raced", time.time() + 600)
                token_cache.store_on(session, key, flight, token, lambda: still_valid(session))
            outcome["exchange"] = "stored"
        except PermissionError:
            outcome["exchange"] = "refused"

    def revocation() -> None:
        with revoking.db.transaction() as session:
            tenancy.scope_id(session, tenant_id)
            revoke(session, grant_id)
        outcome["revocation"] = "committed"

    exchange_thread = threading.Thread(target=exchange)
    exchange_thread.start()
    assert checked.wait(10)
    revocation_thread = threading.Thread(target=revocation)
    revocation_thread.start()
    revocation_thread.join(0.5)  # as far as it gets while the exchange holds on
    go.set()
    exchange_thread.join(10)
    revocation_thread.join(10)
    assert outcome == {"exchange": "stored", "revocation": "committed"}
    assert exchanging.lookup(key) is None
    assert revoking.lookup(key) is None
