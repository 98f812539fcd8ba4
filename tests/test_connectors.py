"""One contract suite for every identity-provider connector (``none``, ``keycloak``, ``okta``),
driven through signed webhooks; Keycloak and Okta are real HTTP servers on 127.0.0.1 that
speak their documented wire format (``tests/idp_fakes.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app import connectors, outbox, revocation, runtime, tenants
from app.models import IdentityProvider, Tenant
from tests.conftest import make_settings, remember_secret
from tests.idp import AUDIENCE, IdentityProviderServer
from tests.idp_fakes import FakeIdp
from tests.processes import free_port
from tests.webhook_support import add_user, link_in, load_user, make_tenant, running_smtp, signed

SUBJECT = "00u1abcd"
SUPPORTED = {  # what each IdP does itself; the rest falls back to idbridge or is skipped
    "none": set(),
    "keycloak": {
        "delete_user",
        "mark_email_verified",
        "send_verification_email",
        "send_password_reset_email",
        "end_sessions",
    },
    "okta": {"delete_user", "send_password_reset_email", "end_sessions"},
}


class Idp:
    """The parametrized IdP: no server for ``none``, a fake for the others."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fake = None if name == "none" else FakeIdp(name)

    def config(self, **settings: str) -> dict[str, Any]:
        config: dict[str, Any] = {
            "issuer": "https://idp.acme.example",
            "jwks_uri": "https://idp.acme.example/keys",
            "connector": self.name,
        }
        if self.fake is not None:
            config["connector_settings"] = {
                "base_url": self.fake.url,
                "realm": self.fake.realm,
                "client_id": self.fake.client_id,
            } | settings
            config["connector_secret"] = self.fake.secret
        return config

    def supports(self, action: str) -> bool:
        return action in SUPPORTED[self.name]

    def admin_calls(self) -> list[tuple[str, str, Any]]:
        return [] if self.fake is None else self.fake.admin_calls()

    def fail(self, failing: bool = True) -> None:
        if self.fake is not None:
            self.fake.failing = failing


@pytest.fixture(params=["none", "keycloak", "okta"])
def idp(request) -> Iterator[Idp]:
    chosen = Idp(request.param)
    yield chosen
    if chosen.fake is not None:
        chosen.fake.stop()


@pytest.fixture
def smtp():
    yield from running_smtp()


@pytest.fixture
def settings(tmp_path, database_url, smtp):
    return make_settings(tmp_path, database_url=database_url, smtp_url=smtp.url)


@pytest.fixture
def acme(app, idp):
    tenant = make_tenant(app, idp=idp.config())
    add_user(app, "acme", SUBJECT, "Ada@Example.com")
    if idp.fake is not None:
        idp.fake.add_user(SUBJECT, email="Ada@Example.com")
    return tenant


def revoked(app) -> bool:
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        return revocation.is_revoked(session, SUBJECT, None, datetime.now(UTC) - timedelta(1))


def test_delete_removes_the_user_at_the_idp_and_here(client, app, idp, acme):
    response = signed(client, acme, "delete", {"id": SUBJECT})
    assert response.status_code == 204
    assert load_user(app, "acme", SUBJECT) is None and revoked(app)
    if idp.supports("delete_user"):
        assert SUBJECT not in idp.fake.users
    if idp.name == "keycloak":
        assert idp.admin_calls() == [("DELETE", f"/admin/realms/acme/users/{SUBJECT}", "")]
    if idp.name == "okta":
        assert [call[:2] for call in idp.admin_calls()] == [
            ("POST", f"/api/v1/users/{SUBJECT}/lifecycle/deactivate"),
            ("DELETE", f"/api/v1/users/{SUBJECT}"),
        ]


def test_delete_of_a_user_the_idp_does_not_know_still_deletes_here(client, app, idp, acme):
    if idp.fake is not None:
        idp.fake.users.clear()
    assert signed(client, acme, "delete", {"id": SUBJECT}).status_code == 204
    assert load_user(app, "acme", SUBJECT) is None


def test_an_idp_failure_on_delete_deletes_nothing_and_a_retry_works(client, app, idp, acme):
    if not idp.supports("delete_user"):
        pytest.skip(f"{idp.name} is never called on delete")
    idp.fail()
    first = signed(client, acme, "delete", {"id": SUBJECT}, webhook_id="msg_d")
    assert first.status_code == 503 and first.get_json()["code"] == "unavailable"
    assert int(first.headers["Retry-After"]) > 0
    assert "Service Unavailable" not in first.get_data(as_text=True)  # no upstream body
    assert load_user(app, "acme", SUBJECT) is not None and not revoked(app)
    idp.fail(False)
    retry = signed(client, acme, "delete", {"id": SUBJECT}, webhook_id="msg_d")
    assert retry.status_code == 204  # a 503 is not remembered: the retry runs afresh
    assert load_user(app, "acme", SUBJECT) is None and SUBJECT not in idp.fake.users


def test_an_unreachable_idp_is_unavailable(tmp_path, client, app, idp):
    if idp.fake is None:
        pytest.skip("no IdP to reach")
    config = idp.config(base_url=f"http://127.0.0.1:{free_port()}")  # nothing listens
    tenant = make_tenant(app, "beta", idp=config)
    add_user(app, "beta", SUBJECT, "ada@example.com")
    response = signed(client, tenant, "delete", {"id": SUBJECT})
    assert response.status_code == 503 and load_user(app, "beta", SUBJECT) is not None


def test_wrong_idp_credentials_are_unavailable_not_a_crash(client, app, idp, acme):
    if idp.fake is None:
        pytest.skip("no credentials")
    idp.fake.secret = remember_secret("another-secret-" + "0" * 20)
    response = signed(client, acme, "delete", {"id": SUBJECT})
    assert response.status_code == 503 and load_user(app, "acme", SUBJECT) is not None


def test_mark_email_verified_tells_the_idp_where_it_can(client, app, idp, acme):
    response = signed(client, acme, "mark-email-verified", {"id": SUBJECT})
    assert response.status_code == 200 and response.get_json()["email_verified"] is True
    if idp.supports("mark_email_verified"):
        assert idp.fake.users[SUBJECT]["emailVerified"] is True
        assert idp.admin_calls() == [
            ("PUT", f"/admin/realms/acme/users/{SUBJECT}", {"emailVerified": True})
        ]
    else:
        assert idp.admin_calls() == []


def test_an_idp_failure_on_mark_verified_changes_nothing(client, app, idp, acme):
    idp.fail()
    response = signed(client, acme, "mark-email-verified", {"id": SUBJECT})
    if idp.supports("mark_email_verified"):
        assert response.status_code == 503
        assert load_user(app, "acme", SUBJECT).email_verified is False
    else:
        assert response.status_code == 200


def test_verification_mail_is_the_idps_own_or_idbridges_link(client, app, idp, acme, smtp):
    assert signed(client, acme, "send-verification-email", {"id": SUBJECT}).status_code == 202
    assert idp.admin_calls() == []  # nothing on the request path
    assert outbox.send_due(runtime.of(app)) == 1
    if idp.supports("send_verification_email"):
        assert idp.admin_calls() == [
            ("PUT", f"/admin/realms/acme/users/{SUBJECT}/send-verify-email", "")
        ]
        assert smtp.messages == []
    else:
        [mail] = smtp.messages
        link = link_in(mail)
        assert client.get(link.removeprefix("http://127.0.0.1:8000")).status_code == 200
        assert load_user(app, "acme", SUBJECT).email_verified is True


def test_password_reset_is_the_idps_own_or_idbridges_link(client, app, idp, acme, smtp):
    response = signed(client, acme, "send-password-reset-email", {"email": "ada@example.com"})
    assert response.status_code == 202 and idp.admin_calls() == []
    assert outbox.send_due(runtime.of(app)) == 1
    if idp.name == "keycloak":
        assert idp.admin_calls() == [
            (
                "PUT",
                f"/admin/realms/acme/users/{SUBJECT}/execute-actions-email",
                ["UPDATE_PASSWORD"],
            )
        ]
    elif idp.name == "okta":
        assert idp.admin_calls() == [
            ("POST", f"/api/v1/users/{SUBJECT}/lifecycle/reset_password?sendEmail=true", "")
        ]
    if idp.supports("send_password_reset_email"):
        assert smtp.messages == []
    else:
        [mail] = smtp.messages
        assert link_in(mail).startswith("https://app.acme.example/reset?lang=en&token=")


def test_an_idp_outage_waits_in_the_outbox_and_sends_once(client, app, idp, acme, smtp):
    if not idp.supports("send_password_reset_email"):
        pytest.skip(f"{idp.name} sends no mail itself")
    idp.fail()
    signed(client, acme, "send-password-reset-email", {"email": "ada@example.com"})
    assert outbox.send_due(runtime.of(app)) == 0
    idp.fail(False)
    before = len(idp.admin_calls())
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert outbox.send_due(runtime.of(app), now=later) == 1
    assert outbox.send_due(runtime.of(app), now=later + timedelta(hours=1)) == 0
    after_recovery = idp.admin_calls()[before:]
    assert len(after_recovery) == 1  # sent once, once the IdP was back
    assert "reset_password" in after_recovery[0][1] or "actions-email" in after_recovery[0][1]


def test_the_connector_is_the_tenants_own(app, idp, acme):
    rt = runtime.of(app)
    with rt.db.read() as session:
        tenant: Tenant = tenants.find(session, "acme")
        connector = connectors.for_tenant(tenant, rt.keyring, allow_private=True)
        assert connector.name == idp.name
        for action in SUPPORTED["keycloak"]:
            assert connector.supports(action) == idp.supports(action)
        assert isinstance(tenant.identity_provider, IdentityProvider)


def test_private_addresses_are_refused_unless_allowed(tmp_path, database_url, idp):
    if idp.fake is None:
        pytest.skip("no outbound call")
    from app import create_app
    from tests.conftest import empty_tables

    flask_app = create_app(
        make_settings(tmp_path, database_url=database_url, allow_private_urls=False)
    )
    empty_tables(runtime.of(flask_app).db)
    tenant = make_tenant(flask_app, idp=idp.config())
    add_user(flask_app, "acme", SUBJECT, "ada@example.com")
    idp.fake.add_user(SUBJECT)
    response = signed(flask_app.test_client(), tenant, "delete", {"id": SUBJECT})
    runtime.of(flask_app).db.dispose()
    assert response.status_code == 503 and idp.fake.calls == []


def test_a_logout_ends_the_sessions_at_the_idp_where_it_can(client, app, idp):
    """CONTRACT §2: a logout is also told to the IdP through its connector (off the request
    path, through the outbox); a back-channel logout came from the IdP and is not echoed."""
    with IdentityProviderServer() as issuer:
        idp_settings = issuer.settings() | {
            key: value for key, value in idp.config().items() if key.startswith("connector")
        }
        tenant = make_tenant(app, "beta", idp=idp_settings)
        add_user(app, "beta", SUBJECT, "ada@example.com")
        if idp.fake is not None:
            idp.fake.add_user(SUBJECT, email="ada@example.com")
        token = remember_secret(issuer.access_token(SUBJECT, sid="s-1"))
        response = client.post(
            f"/t/{tenant.slug}/oidc/logout", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 204
        sent = outbox.send_due(runtime.of(app))
        logout_calls = {
            "keycloak": [("POST", f"/admin/realms/{idp.fake.realm}/users/{SUBJECT}/logout", "")]
            if idp.fake
            else [],
            "okta": [("DELETE", f"/api/v1/users/{SUBJECT}/sessions", "")],
            "none": [],
        }[idp.name]
        assert idp.admin_calls() == logout_calls
        assert sent == (1 if idp.supports("end_sessions") else 0)
        before = len(idp.admin_calls())
        logout_token = remember_secret(issuer.logout_token(SUBJECT, audience=AUDIENCE))
        back = client.post(
            f"/t/{tenant.slug}/oidc/backchannel-logout", data={"logout_token": logout_token}
        )
        assert back.status_code == 200
        assert outbox.send_due(runtime.of(app)) == 0
        assert len(idp.admin_calls()) == before
