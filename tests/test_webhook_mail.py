"""Mail from the webhooks: the outbox, a real SMTP server (aiosmtpd), verification links,
password reset without an account oracle (THREATS.md, Webhooks and Faults)."""

from __future__ import annotations

import pathlib
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

import pytest
from sqlalchemy import select

from app import jobs, outbox, runtime, tenants, users
from app.models import EmailToken, OutboxMessage
from tests.conftest import make_settings, remember_secret
from tests.webhook_support import (
    add_user,
    html_of,
    link_in,
    load_user,
    make_tenant,
    running_smtp,
    signed,
    text_of,
)


@pytest.fixture
def smtp():
    yield from running_smtp()


@pytest.fixture
def settings(tmp_path, database_url, smtp):
    return make_settings(tmp_path, database_url=database_url, smtp_url=smtp.url)


@pytest.fixture
def acme(app):
    tenant = make_tenant(app)
    add_user(app, "acme", "00u1abcd", "Ada@Example.com", customer="C-100042")
    return tenant


def send_due(app, later: timedelta = timedelta(0)) -> int:
    return outbox.send_due(runtime.of(app), now=datetime.now(UTC) + later)


def messages(app) -> list[OutboxMessage]:
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def follow(client, link: str):
    parts = urlsplit(link)
    return client.get(f"{parts.path}?{parts.query}")


def test_verification_mail_arrives_and_its_link_verifies_the_address(client, app, acme, smtp):
    response = signed(client, acme, "send-verification-email", {"id": "00u1abcd"})
    assert response.status_code == 202
    assert smtp.messages == []  # nothing is sent on the request path
    assert send_due(app) == 1
    [mail] = smtp.messages
    assert mail["To"] == "Ada@Example.com"  # the address as stored
    assert mail["From"] == "no-reply@acme.example"
    assert mail["Subject"] == "Confirm your email address"
    link = link_in(mail)
    assert link.startswith("http://127.0.0.1:8000/t/acme/verify-email?token=")
    assert link in html_of(mail)
    page = follow(client, link)
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert '<html lang="en">' in text and "<title>Email address confirmed</title>" in text
    assert "<h1>Email address confirmed</h1>" in text and "<script" not in text
    assert load_user(app, "acme", "00u1abcd").email_verified is True
    assert send_due(app) == 0  # sent once


def test_tokens_are_stored_hashed(client, app, acme, smtp):
    signed(client, acme, "send-verification-email", {"id": "00u1abcd"})
    send_due(app)
    token = link_in(smtp.messages[0]).rpartition("token=")[2]
    with runtime.of(app).db.read() as session:
        tenants.find(session, "acme")
        [row] = session.scalars(select(EmailToken)).all()
        assert row.token_hash == runtime.of(app).keyring.hash_token(token)
        assert token not in row.token_hash
        [message] = session.scalars(select(OutboxMessage)).all()
        assert token not in message.payload_sealed


def _refused(page) -> bool:
    text = page.get_data(as_text=True)
    return page.status_code == 400 and "<h1>This link does not work</h1>" in text


def test_a_link_works_once(client, app, acme, smtp):
    signed(client, acme, "send-verification-email", {"id": "00u1abcd"})
    send_due(app)
    link = link_in(smtp.messages[0])
    assert follow(client, link).status_code == 200
    assert _refused(follow(client, link))


def test_a_link_is_refused_after_an_email_change(client, app, acme, smtp):
    signed(client, acme, "send-verification-email", {"id": "00u1abcd"})
    send_due(app)
    with runtime.of(app).db.transaction() as session:
        tenants.find(session, "acme")
        user = users.by_subject(session, "00u1abcd")
        user.email, user.email_canonical = "ada@new.example", "ada@new.example"
    assert _refused(follow(client, link_in(smtp.messages[0])))
    assert load_user(app, "acme", "00u1abcd").email_verified is False


def test_an_expired_link_is_refused(client, app, acme, smtp):
    signed(client, acme, "send-verification-email", {"id": "00u1abcd"})
    send_due(app)
    with runtime.of(app).db.transaction() as session:
        tenants.find(session, "acme")
        session.scalars(select(EmailToken)).one().expires_at = datetime.now(UTC)
    assert _refused(follow(client, link_in(smtp.messages[0])))


def test_a_reset_token_is_not_a_verification_token(client, app, acme, smtp):
    response = signed(client, acme, "send-password-reset-email", {"email": "ada@example.com"})
    assert response.status_code == 202
    send_due(app)
    [mail] = smtp.messages
    link = link_in(mail)
    assert link.startswith("https://app.acme.example/reset?lang=en&token=")
    token = link.rpartition("token=")[2]
    assert _refused(client.get(f"/t/acme/verify-email?token={token}"))
    assert load_user(app, "acme", "00u1abcd").email_verified is False


@pytest.mark.parametrize("query", ["", "?token=", "?token=nonsense", "?token=" + "x" * 300])
def test_a_bad_or_missing_token_is_refused(client, acme, query):
    assert _refused(client.get(f"/t/acme/verify-email{query}"))


def test_the_page_of_an_unknown_tenant_is_a_404_page(client, acme):
    page = client.get("/t/nosuch/verify-email?token=abc")
    assert page.status_code == 404 and page.mimetype == "text/html"


def test_password_reset_is_the_same_answer_for_known_unknown_and_blocked(client, app, acme, smtp):
    add_user(app, "acme", "00u2", "blocked@example.com", active=False)
    answers = [
        signed(client, acme, "send-password-reset-email", {"email": address})
        for address in ("ADA@example.com", "nobody@example.com", "blocked@example.com")
    ]
    assert {(a.status_code, a.data) for a in answers} == {(202, b"")}
    assert [a.headers.get("Content-Type") for a in answers] == [
        answers[0].headers.get("Content-Type")
    ] * 3
    assert smtp.messages == []  # off the request path
    assert len(messages(app)) == 1
    assert send_due(app) == 1
    [mail] = smtp.messages
    assert mail["To"] == "Ada@Example.com" and mail["Subject"] == "Reset your password"
    assert "https://app.acme.example/reset?lang=en&token=" in text_of(mail)


def test_without_a_reset_url_nothing_is_sent(client, app, smtp):
    tenant = make_tenant(app, "beta", mail={"from": "no-reply@beta.example"})
    add_user(app, "beta", "00u1", "ada@example.com")
    response = signed(client, tenant, "send-password-reset-email", {"email": "ada@example.com"})
    assert response.status_code == 202
    assert outbox.send_due(runtime.of(app)) == 0 and smtp.messages == []


def test_a_retried_webhook_id_sends_one_mail(client, app, acme, smtp):
    for _ in range(2):
        signed(client, acme, "send-verification-email", {"id": "00u1abcd"}, webhook_id="m1")
        send_due(app)
    for _ in range(2):
        signed(
            client, acme, "send-password-reset-email", {"email": "ada@example.com"}, webhook_id="m2"
        )
        send_due(app)
    assert len(smtp.messages) == 2


def test_an_smtp_outage_loses_nothing_and_fails_no_webhook(client, app, acme, smtp):
    smtp.stop()
    response = signed(client, acme, "send-verification-email", {"id": "00u1abcd"})
    assert response.status_code == 202
    assert send_due(app) == 0
    [pending] = messages(app)
    assert pending.state == "pending" and pending.attempts == 1
    assert pending.next_attempt_at > datetime.now(UTC)  # backing off
    assert send_due(app) == 0  # not due yet: no attempt
    assert messages(app)[0].attempts == 1
    smtp.start()
    assert send_due(app, later=timedelta(minutes=1)) == 1
    [mail] = smtp.messages
    assert follow(client, link_in(mail)).status_code == 200
    assert send_due(app, later=timedelta(hours=2)) == 0
    assert messages(app)[0].state == "sent" and len(smtp.messages) == 1


def test_retries_back_off_exponentially_then_give_up(client, app, acme, smtp):
    smtp.stop()
    signed(client, acme, "send-verification-email", {"id": "00u1abcd"})
    delays = []
    now = datetime.now(UTC)
    for _ in range(outbox.MAX_ATTEMPTS):
        assert outbox.send_due(runtime.of(app), now=now) == 0
        message = messages(app)[0]
        delays.append(message.next_attempt_at - now)
        now = message.next_attempt_at
    assert delays[:4] == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert max(delays[:-1]) == outbox.LONGEST_RETRY
    assert messages(app)[0].state == "dead"


def test_two_workers_never_send_one_message_twice(client, app, acme, smtp):
    for number in range(6):
        add_user(app, "acme", f"00u-{number}", f"user{number}@example.com")
        signed(client, acme, "send-verification-email", {"id": f"00u-{number}"})
    barrier = threading.Barrier(3)
    sent: list[int] = []

    def worker() -> None:
        barrier.wait(timeout=10)
        sent.append(outbox.send_due(runtime.of(app)))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(sent) == 6
    assert sorted(m["To"] for m in smtp.messages) == sorted(
        f"user{n}@example.com" for n in range(6)
    )


def test_a_tenant_overrides_its_templates_with_files(client, app, acme, smtp, settings):
    path = pathlib.Path(settings.instance_path) / "mail_templates" / "acme"
    path.mkdir(parents=True)
    (path / "verify_email.subject.txt").write_text("Bienvenue chez $tenant\n")
    (path / "verify_email.txt").write_text("Confirmez $email : $link ($hours h)\n")
    (path / "verify_email.html").write_text('<p lang="fr"><a href="$link">$email</a></p>')
    add_user(app, "acme", "00u7", "o'neil<x>@example.com")
    signed(client, acme, "send-verification-email", {"id": "00u7"})
    send_due(app)
    [mail] = smtp.messages
    assert mail["Subject"] == "Bienvenue chez ACME"
    assert text_of(mail).startswith("Confirmez o'neil<x>@example.com : http://")
    assert "(24 h)" in text_of(mail)
    assert "o&#x27;neil&lt;x&gt;@example.com" in html_of(mail)  # escaped in HTML


def test_the_scheduler_sends_in_the_background(tmp_path, database_url, smtp):
    from app import create_app
    from tests.conftest import empty_tables

    settings = make_settings(
        tmp_path, database_url=database_url, smtp_url=smtp.url, outbox_interval=0.2
    )
    flask_app = create_app(settings)
    empty_tables(runtime.of(flask_app).db)
    acme = make_tenant(flask_app)
    add_user(flask_app, "acme", "00u1", "ada@example.com")
    response = signed(flask_app.test_client(), acme, "send-verification-email", {"id": "00u1"})
    assert response.status_code == 202
    scheduler = jobs.start(runtime.of(flask_app))
    try:
        deadline = time.monotonic() + 15
        while not smtp.messages and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        scheduler.shutdown(wait=True)
        runtime.of(flask_app).db.dispose()
    assert len(smtp.messages) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_credentials_from_the_url_are_used():
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from app import mail
    from tests.processes import free_port
    from tests.webhook_support import SmtpServer

    password = remember_secret("p@ss:word/" + "9" * 12)
    seen: list[tuple[bytes, bytes]] = []

    def authenticator(_server, _session, _envelope, _mechanism, data):
        seen.append((data.login, data.password))
        return AuthResult(success=data.password == password.encode())

    holder = SmtpServer()
    port = free_port()
    controller = Controller(
        holder.handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        message = mail.Mail("no-reply@acme.example", "ada@example.com", "Hi", "text", "<p>x</p>")
        url = f"smtp://mailer%40acme:{quote(password, safe='')}@127.0.0.1:{port}"
        mail.send(url, message)
        assert seen == [(b"mailer@acme", password.encode())]
        assert holder.messages[0]["To"] == "ada@example.com"
    finally:
        controller.stop()


@pytest.mark.parametrize("value", ["-1", "3601", "soon"])
def test_a_bad_outbox_interval_stops_the_start_naming_it(value):
    from app.settings import Settings, SettingsError

    environ = {"IDBRIDGE_OUTBOX_INTERVAL": value, "IDBRIDGE_SECRET_KEY": "k" * 40}
    with pytest.raises(SettingsError, match="IDBRIDGE_OUTBOX_INTERVAL"):
        Settings.load(environ=environ)
