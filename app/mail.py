"""Mail: the tenant's templates, and sending one message over SMTP (``IDBRIDGE_SMTP_URL``).

Templates. Each kind of mail (``verify_email``, ``password_reset``) has a subject, a text
and an HTML body with built-in defaults. A tenant overrides any of them with files in the
instance folder::

    {instance}/mail_templates/{tenant}/{kind}.subject.txt
    {instance}/mail_templates/{tenant}/{kind}.txt
    {instance}/mail_templates/{tenant}/{kind}.html

using ``string.Template`` placeholders: ``$link``, ``$tenant``, ``$email``, ``$hours``
(how long the link works). Values are HTML-escaped in the HTML body. A missing file keeps
the default; a template with an unknown placeholder leaves it as written.

SMTP. ``smtp://host:25`` (plain), ``smtp+starttls://user:pass@host:587`` (STARTTLS, RFC 3207)
and ``smtps://user:pass@host:465`` (implicit TLS, RFC 8314); user and password are optional and
percent-decoded. A message goes only to the address as stored on the user.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from string import Template
from urllib.parse import unquote, urlsplit

SMTP_TIMEOUT = 10.0
KINDS = ("verify_email", "password_reset")

DEFAULTS: dict[str, dict[str, str]] = {
    "verify_email": {
        "subject": "Confirm your email address",
        "text": (
            "Hello,\n\nplease confirm that $email is your email address by opening this link:\n\n"
            "$link\n\nThe link works once, for $hours hours. If you did not expect this mail, "
            "ignore it.\n"
        ),
        "html": (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            "<title>Confirm your email address</title></head><body>\n"
            "<p>Hello,</p>\n<p>please confirm that $email is your email address:</p>\n"
            '<p><a href="$link">Confirm my email address</a></p>\n'
            "<p>The link works once, for $hours hours. If you did not expect this mail, "
            "ignore it.</p>\n</body></html>\n"
        ),
    },
    "password_reset": {
        "subject": "Reset your password",
        "text": (
            "Hello,\n\nsomeone asked to reset the password of $email. To choose a new one, "
            "open this link:\n\n$link\n\nThe link works once, for $hours hours. If it was not "
            "you, ignore this mail: your password stays as it is.\n"
        ),
        "html": (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            "<title>Reset your password</title></head><body>\n"
            "<p>Hello,</p>\n<p>someone asked to reset the password of $email.</p>\n"
            '<p><a href="$link">Choose a new password</a></p>\n'
            "<p>The link works once, for $hours hours. If it was not you, ignore this mail: "
            "your password stays as it is.</p>\n</body></html>\n"
        ),
    },
}
_FILES = {"subject": ".subject.txt", "text": ".txt", "html": ".html"}


@dataclass(frozen=True)
class Mail:
    sender: str
    recipient: str
    subject: str
    text: str
    html: str


def render(
    instance_path: str, tenant_slug: str, kind: str, values: dict[str, str]
) -> tuple[str, str, str]:
    """(subject, text, html) of a ``kind`` mail for the tenant, its overrides applied."""
    folder = Path(instance_path) / "mail_templates" / tenant_slug
    parts: dict[str, str] = {}
    for part, default in DEFAULTS[kind].items():
        path = folder / f"{kind}{_FILES[part]}"
        source = path.read_text(encoding="utf-8") if path.is_file() else default
        shown = {k: html.escape(v) for k, v in values.items()} if part == "html" else values
        parts[part] = Template(source).safe_substitute(shown)
    subject = " ".join(parts["subject"].split())  # one line: no header injection
    return subject, parts["text"], parts["html"]


def message(mail: Mail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = mail.sender
    msg["To"] = mail.recipient
    msg["Subject"] = mail.subject
    msg["Message-ID"] = make_msgid(domain=mail.sender.rpartition("@")[2] or None)
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    return msg


class MailNotConfigured(Exception):
    """``IDBRIDGE_SMTP_URL`` is unset: mail waits in the outbox until it is set."""


def send(smtp_url: str, mail: Mail, timeout: float = SMTP_TIMEOUT) -> None:
    """Send one message; raises ``smtplib.SMTPException`` or ``OSError`` when it did not go."""
    if not smtp_url:
        raise MailNotConfigured("IDBRIDGE_SMTP_URL is not set")
    url = urlsplit(smtp_url)
    host = url.hostname or "localhost"
    context = ssl.create_default_context()
    if url.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            host, url.port or 465, timeout=timeout, context=context
        )
    else:
        client = smtplib.SMTP(host, url.port or 25, timeout=timeout)
    with client:
        if url.scheme == "smtp+starttls":
            client.starttls(context=context)
        if url.username:
            client.login(unquote(url.username), unquote(url.password or ""))
        client.send_message(message(mail), from_addr=mail.sender, to_addrs=[mail.recipient])
