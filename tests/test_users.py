"""Users: one canonical email form, and session revocation by user or by session."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app import revocation, runtime, tenants, users
from app.errors import Conflict, NotFound
from app.models import User, utcnow
from app.schemas import TenantSchema


def test_canonical_email_folds_case_and_compatibility_forms():
    assert users.canonical_email(" Ada@Example.COM ") == "ada@example.com"
    assert users.canonical_email("STRASSE@example.com") == users.canonical_email(
        "straße@example.com"
    )
    assert (
        users.canonical_email("\uff41\uff44\uff41@example.com") == "ada@example.com"
    )  # fullwidth (NFKC)
    assert users.canonical_email("ada@example.com") != users.canonical_email("ada@example.org")


def _user(subject: str, email: str) -> User:
    return User(
        scim_id=subject + "-scim",
        subject=subject,
        user_name=subject,
        user_name_canonical=subject,
        email=email,
        email_canonical=users.canonical_email(email),
    )


def test_lookups_use_the_canonical_form_and_keep_the_stored_address(app):
    db = runtime.of(app).db
    with db.transaction() as session:
        tenants.create(session, None, TenantSchema().load({"slug": "acme"}))
        session.add(_user("00u1", "Ada@Example.com"))
    with db.read() as session:
        tenants.find(session, "acme")
        found = users.by_email(session, "ADA@example.COM")
        assert found.subject == "00u1" and found.email == "Ada@Example.com"
        with pytest.raises(NotFound):
            users.by_email(session, "ada@example.co")
    with pytest.raises(Conflict), db.transaction() as session:
        tenants.find(session, "acme")
        session.add(_user("00u2", "ADA@EXAMPLE.COM"))


def test_revocation_by_user_and_by_session(app):
    db = runtime.of(app).db
    now = utcnow()
    with db.transaction() as session:
        tenants.create(session, None, TenantSchema().load({"slug": "acme"}))
        revocation.revoke(session, "00u1", "logout", session_id="sid-1", at=now)
    earlier, later = now - timedelta(seconds=5), now + revocation.SKEW + timedelta(seconds=5)
    with db.transaction() as session:
        tenants.find(session, "acme")
        assert revocation.is_revoked(session, "00u1", "sid-1", earlier)
        assert revocation.is_revoked(session, "00u1", "sid-1", later)  # the session is over
        assert revocation.is_revoked(session, "00u1", None, earlier)  # no sid: may be of it
        assert not revocation.is_revoked(session, "00u1", None, later)
        assert not revocation.is_revoked(session, "00u1", "sid-2", earlier)
        revocation.revoke(session, "00u1", "blocked", at=now)
        assert revocation.is_revoked(session, "00u1", "sid-2", earlier)
        assert revocation.is_revoked(session, "00u1", None, earlier)
        assert not revocation.is_revoked(session, "00u9", None, earlier)
        revocation.revoke(session, "00u1", "older", at=earlier)  # never moves backwards
        assert revocation.is_revoked(session, "00u1", None, now)
