"""``idbridge apply -f FILE``: make tenants, clients, integrations and grants match a YAML file.

Written by hand rather than with a generic YAML-to-model loader because the file needs three
things such loaders do not give: errors that name the line and the field path (the YAML node
tree keeps the marks, the marshmallow schemas of ``app.schemas`` give the path), secrets that
never sit in the file (``{env: NAME}`` or ``generate``, nothing else), and a plan that runs
through the same services as the admin API in one transaction, so an error anywhere leaves the
store exactly as it was.

Rules (CONTRACT §5): tenants not in the file are left alone. Inside a tenant, a section that is
present is authoritative (what it does not list is deleted, or for grants revoked); an absent
section leaves that part as it is. Applying the same file twice changes nothing the second
time: ``{env: NAME}`` secrets are compared by keyed hash or by decrypting, and ``generate``
secrets are recognised by their ``source`` and never regenerated.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import yaml
from marshmallow import ValidationError, fields, validate
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import clients, credentials, integrations, tenancy, tenants
from app.crypto import Keyring, generate_token
from app.database import Database
from app.errors import Conflict, InvalidInput, NotFound
from app.models import Integration, Tenant
from app.schemas import (
    CLIENT_ID,
    ClientSchema,
    IdentityProviderSchema,
    IntegrationSchema,
    Strict,
    TenantSchema,
    private_urls,
)
from app.settings import Settings

log = logging.getLogger("idbridge.apply")

Where = tuple[str | int, ...]
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FILE_ONLY = ("webhook_secrets", "scim_tokens", "clients", "integrations")
# tenants.update's attribute names -> the file's field names, for the report
TENANT_FIELDS = {
    "user_id_attribute": "users.id_attribute",
    "customer_attribute": "users.customer_attribute",
    "customer_required": "users.customer_required",
    "customer_claim": "users.customer_claim",
    "mail_from": "mail.from",
    "password_reset_url": "mail.password_reset_url",
    "logout_redirect_uris": "oidc.logout_redirect_uris",
}


class FileError(Exception):
    """The file cannot be applied; the message names the file, the line and the field."""


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    verb: str  # created, changed, unchanged, deleted, revoked
    subject: str  # "client acme/broker"
    fields: tuple[str, ...] = ()
    # (label, plaintext) of a generated secret: rendered once, never logged, never in repr
    shown_once: tuple[str, str] | None = field(default=None, repr=False)

    def text(self) -> str:
        details = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.verb} {self.subject}{details}"


@dataclass
class Report:
    changes: list[Change] = field(default_factory=list)

    def add(
        self,
        verb: str,
        subject: str,
        fields: list[str] | None = None,
        secret: str | None = None,
        label: str = "",
    ) -> None:
        """Record one line; ``secret`` (a generated one) is rendered once under it."""
        shown = (label or f"secret for {subject}", secret) if secret else None
        self.changes.append(Change(verb, subject, tuple(fields or ()), shown))

    def count(self, verb: str) -> int:
        verbs = ("deleted", "revoked") if verb == "deleted" else (verb,)
        return sum(change.verb in verbs for change in self.changes)

    def summary(self) -> str:
        verbs = ("created", "changed", "unchanged", "deleted")
        return ", ".join(f"{self.count(verb)} {verb}" for verb in verbs)

    def render(self) -> str:
        lines = []
        for change in self.changes:
            lines.append(change.text())
            if change.shown_once:
                label, secret = change.shown_once
                lines.append(f"  {label} (shown once): {secret}")
        return "\n".join([*lines, self.summary()])


# --- the file's schema: app.schemas plus the file-only keys ---------------------------------


@dataclass
class SecretRef:
    """``{env: NAME}`` (``env`` set) or ``generate`` (``env`` None); ``value`` once resolved."""

    env: str | None
    value: str = field(default="", repr=False)


class _Secret(fields.Field[SecretRef]):
    def __init__(self, *, generate: bool, **kwargs: Any) -> None:
        self.generate = generate
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> SecretRef:
        if self.generate and value == "generate":
            return SecretRef(None)
        if isinstance(value, dict) and list(value) == ["env"]:
            name = value["env"]
            if isinstance(name, str) and ENV_NAME.match(name):
                return SecretRef(name)
            raise ValidationError("env must name an environment variable")
        allowed = "{env: NAME} or generate" if self.generate else "{env: NAME}"
        raise ValidationError(f"must be {allowed}: secrets are never written in the file")


class _FileIdentityProvider(IdentityProviderSchema):
    connector_secret = _Secret(generate=False, allow_none=True)


class _FileClient(ClientSchema):
    secret = _Secret(generate=True)


class _FileIntegration(IntegrationSchema):
    client_secret = _Secret(generate=False, allow_none=True)  # the upstream issues it
    grants = fields.List(fields.String(validate=validate.Regexp(CLIENT_ID)))


class _FileTenant(TenantSchema):
    idp = fields.Nested(_FileIdentityProvider, allow_none=True, load_default=None)
    webhook_secrets = fields.List(_Secret(generate=True))
    scim_tokens = fields.List(_Secret(generate=True))
    clients = fields.List(fields.Nested(_FileClient))
    integrations = fields.List(fields.Nested(_FileIntegration))


class _FileSchema(Strict):
    tenants = fields.List(fields.Nested(_FileTenant), required=True)


# --- reading: YAML nodes keep the line of every value ---------------------------------------


def _dotted(where: Where) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


@dataclass(frozen=True)
class _Document:
    name: str
    root: yaml.Node

    def node(self, where: Where) -> yaml.Node | None:
        node: yaml.Node | None = self.root
        for part in where:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == part), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                node = node.value[part] if part < len(node.value) else None
            else:
                node = None
            if node is None:
                return None
        return node

    def line(self, where: Where) -> int:
        """The line of ``where``, or of its nearest ancestor in the file (a missing field)."""
        for length in range(len(where), -1, -1):
            node = self.node(where[:length])
            if node is not None:
                return node.start_mark.line + 1
        return 1

    def error(self, where: Where, message: str) -> FileError:
        path = f"{_dotted(where)}: " if where else ""
        return FileError(f"{self.name} line {self.line(where)}: {path}{message}")


def _read(path: str | PathLike[str]) -> tuple[_Document, Any]:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError(f"{name}: cannot be read ({exc})") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise FileError(f"{name} line 1: the file is empty; it must hold a 'tenants' list")
        _refuse_duplicate_keys(name, root, (), set())
        return _Document(name, root), loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise FileError(f"{name}{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise FileError(f"{name}: {exc}") from None
    finally:
        loader.dispose()


def _refuse_duplicate_keys(name: str, node: yaml.Node, where: Where, done: set[int]) -> None:
    """PyYAML keeps the last of two equal keys silently; half a section would vanish."""
    if id(node) in done:  # an alias: checked already (and a recursive one must not loop)
        return
    done.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value in seen:
                path = f"{_dotted(where)}: " if where else ""
                line = key.start_mark.line + 1
                raise FileError(f"{name} line {line}: {path}duplicate key {key.value!r}")
            if isinstance(key, yaml.ScalarNode):
                seen.add(key.value)
            _refuse_duplicate_keys(name, value, (*where, str(key.value)), done)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(name, item, (*where, index), done)


def _flatten(messages: Any, where: Where = ()) -> Iterator[tuple[Where, str]]:
    if isinstance(messages, dict):
        for key, value in messages.items():
            yield from _flatten(value, where if key == "_schema" else (*where, key))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        yield where, " ".join(messages)
    elif isinstance(messages, list):
        for item in messages:
            yield from _flatten(item, where)
    else:
        yield where, str(messages)


def _load(document: _Document, data: Any, environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """Validate the whole file and read its secrets before anything touches the store."""
    if not isinstance(data, dict):
        raise document.error((), "the file must be a mapping with a 'tenants' list")
    try:
        loaded = _FileSchema().load(data)
    except ValidationError as exc:
        errors = list(_flatten(exc.messages))
        where, message = min(errors, key=lambda error: document.line(error[0]))
        raise document.error(where, message) from None
    tenant_list: list[dict[str, Any]] = loaded["tenants"]
    _refuse_duplicates(document, [t["slug"] for t in tenant_list], ("tenants",), "slug", "tenant")
    for index, tenant in enumerate(tenant_list):
        # an absent section is left as it is: drop what the schema filled in by default
        raw = data["tenants"][index]
        for key in [key for key in tenant if key not in raw]:
            del tenant[key]
        where: Where = ("tenants", index)
        for section, key in (("clients", "client_id"), ("integrations", "name")):
            names = [entry[key] for entry in tenant.get(section, [])]
            _refuse_duplicates(document, names, (*where, section), key, section[:-1])
        for position, integration in enumerate(tenant.get("integrations", [])):
            grants_at: Where = (*where, "integrations", position, "grants")
            _refuse_duplicates(document, integration.get("grants", []), grants_at, None, "grant")
        for secret_at, ref in _secrets(tenant, where):
            if ref is not None and ref.env is not None:
                ref.value = environ.get(ref.env, "")
                if not ref.value:
                    state = "is empty" if ref.env in environ else "is not set"
                    raise document.error(
                        (*secret_at, "env"), f"environment variable {ref.env} {state}"
                    )
    return tenant_list


def _refuse_duplicates(
    document: _Document, names: list[Any], where: Where, key: str | None, what: str
) -> None:
    seen: dict[Any, int] = {}
    for index, name in enumerate(names):
        at: Where = (*where, index) if key is None else (*where, index, key)
        if name in seen:
            first = (*where, seen[name]) if key is None else (*where, seen[name], key)
            message = f"duplicate {what} {name!r} (also on line {document.line(first)})"
            raise document.error(at, message)
        seen[name] = index


def _secrets(tenant: dict[str, Any], where: Where) -> Iterator[tuple[Where, SecretRef | None]]:
    if tenant.get("idp") and "connector_secret" in tenant["idp"]:
        yield (*where, "idp", "connector_secret"), tenant["idp"]["connector_secret"]
    for section in ("webhook_secrets", "scim_tokens"):
        for index, ref in enumerate(tenant.get(section, [])):
            yield (*where, section, index), ref
    for index, client in enumerate(tenant.get("clients", [])):
        if "secret" in client:
            yield (*where, "clients", index, "secret"), client["secret"]
    for index, integration in enumerate(tenant.get("integrations", [])):
        if "client_secret" in integration:
            yield (*where, "integrations", index, "client_secret"), integration["client_secret"]


def _plain(ref: SecretRef | None) -> str | None:
    return None if ref is None else ref.value


def _source(ref: SecretRef) -> str:
    return f"file:env:{ref.env}"


# --- applying -------------------------------------------------------------------------------


def apply(
    settings: Settings, db: Database, path: str | PathLike[str], environ: Mapping[str, str]
) -> Report:
    """Make the store match the file at ``path`` in one transaction; return what was done.

    Raises ``FileError`` (the file is wrong: nothing was written) or ``DomainError`` (the store
    refused, e.g. unavailable or a concurrent change: nothing was written either).
    """
    document, data = _read(path)
    with private_urls(settings.allow_private_urls):
        tenant_list = _load(document, data, environ)
    report = Report()
    with db.transaction() as session:
        run = _Run(session, Keyring(settings.secret_key), document, report)
        for index, tenant in enumerate(tenant_list):
            run.tenant(("tenants", index), tenant)
    for change in report.changes:
        if change.verb != "unchanged":
            log.info("apply %s: %s", document.name, change.text())
    log.info("apply %s: %s", document.name, report.summary())
    return report


@dataclass
class _Run:
    session: Session
    keyring: Keyring
    document: _Document
    report: Report

    @contextmanager
    def at(self, where: Where) -> Iterator[None]:
        """Turn a service's refusal into a ``FileError`` naming the entry's line."""
        try:
            yield
        except (InvalidInput, Conflict, NotFound) as exc:
            if exc.field and self.document.node((*where, exc.field)) is not None:
                where = (*where, exc.field)
            raise self.document.error(where, exc.message) from None
        except IntegrityError:
            message = "conflicts with an existing record (a value that must be unique is in use)"
            raise self.document.error(where, message) from None

    def tenant(self, where: Where, data: dict[str, Any]) -> None:
        values = {key: value for key, value in data.items() if key not in FILE_ONLY}
        if values.get("idp") and "connector_secret" in values["idp"]:
            idp = values["idp"]
            values["idp"] = idp | {"connector_secret": _plain(idp["connector_secret"])}
        tenancy.release(self.session)
        slug = data["slug"]
        with self.at(where):
            try:
                tenant = tenants.find(self.session, slug)
            except NotFound:
                tenant = tenants.create(self.session, self.keyring, values)
                self.report.add("created", f"tenant {slug}")
            else:
                changed = tenants.update(self.session, self.keyring, tenant, values)
                names = [TENANT_FIELDS.get(name, name) for name in changed]
                self.report.add("changed" if names else "unchanged", f"tenant {slug}", names)
        if "webhook_secrets" in data:
            self.webhook_secrets(tenant, where, data["webhook_secrets"])
        if "scim_tokens" in data:
            self.scim_tokens(tenant, where, data["scim_tokens"])
        # Integrations the file drops go only after the clients are set, so a client's changed
        # audiences are reported on the client, not silently edited by the deletion.
        listed = data.get("integrations")
        stale = self.integrations(tenant, where, listed) if listed is not None else []
        if "clients" in data:
            known = {entry["name"] for entry in listed} if listed is not None else None
            self.clients(tenant, where, data["clients"], known)
        self.delete_integrations(tenant, stale)
        if listed is not None:
            self.grants(tenant, where, listed)

    def webhook_secrets(self, tenant: Tenant, where: Where, refs: list[SecretRef]) -> None:
        rows = credentials.webhook_secrets(self.session)
        self.credentials(
            tenant,
            (*where, "webhook_secrets"),
            refs,
            rows,
            [row.fingerprint for row in rows],
            "webhook secret",
            credentials.add_webhook_secret,
        )

    def scim_tokens(self, tenant: Tenant, where: Where, refs: list[SecretRef]) -> None:
        rows = credentials.scim_tokens(self.session)
        self.credentials(
            tenant,
            (*where, "scim_tokens"),
            refs,
            rows,
            [row.token_hash for row in rows],
            "SCIM token",
            credentials.add_scim_token,
        )

    def credentials(
        self,
        tenant: Tenant,
        where: Where,
        refs: list[SecretRef],
        rows: list[Any],
        digests: list[str],
        what: str,
        add: Callable[..., tuple[Any, str]],
    ) -> None:
        """Several secrets at a time (rotation): match each entry to a row, add, delete."""
        kept: list[Any] = []
        generated = 0
        for index, ref in enumerate(refs):
            if ref.env is not None:
                source = _source(ref)
                digest = self.keyring.hash_token(ref.value)
                matches = [row for row, d in zip(rows, digests, strict=True) if d == digest]
            else:
                source = f"file:generate:{generated}"
                generated += 1
                matches = [row for row in rows if row.source == source]
            row = next((row for row in matches if row not in kept), None)
            if row is None and matches:  # the same value listed twice
                raise self.document.error((*where, index), f"the same {what} is listed twice")
            if row is not None:
                kept.append(row)
                self.report.add("unchanged", f"{what} {tenant.slug}/{row.public_id}")
                continue
            with self.at((*where, index)):
                row, plain = add(self.session, self.keyring, tenant, ref.value or None, source)
                self.session.flush()
            kept.append(row)
            self.report.add(
                "created",
                f"{what} {tenant.slug}/{row.public_id}",
                secret=plain if ref.env is None else None,
                label=f"{what} for tenant {tenant.slug}",
            )
        for row in rows:
            if row not in kept:
                self.session.delete(row)
                self.report.add("deleted", f"{what} {tenant.slug}/{row.public_id}")

    def integrations(
        self, tenant: Tenant, where: Where, entries: list[dict[str, Any]]
    ) -> list[Integration]:
        """Create or update the listed integrations; return the ones the file no longer lists."""
        existing = {row.name: row for row in integrations.list_all(self.session)}
        for index, entry in enumerate(entries):
            data = {k: v for k, v in entry.items() if k not in ("grants", "client_secret")}
            secret: dict[str, Any] = {}
            source = "file"
            if "client_secret" in entry:
                secret = {"client_secret": _plain(entry["client_secret"])}
                source = _source(entry["client_secret"]) if entry["client_secret"] else "file"
            subject = f"integration {tenant.slug}/{entry['name']}"
            with self.at((*where, "integrations", index)):
                row = existing.pop(entry["name"], None)
                if row is None:
                    row = integrations.create(self.session, self.keyring, tenant, data)
                    integrations.update(self.keyring, tenant, row, secret, source)
                    self.report.add("created", subject)
                else:
                    changed = integrations.update(self.keyring, tenant, row, data | secret, source)
                    self.report.add("changed" if changed else "unchanged", subject, changed)
        return list(existing.values())

    def delete_integrations(self, tenant: Tenant, stale: list[Integration]) -> None:
        for row in stale:
            users = [c for c in clients.list_all(self.session) if row.name in c.audiences]
            integrations.delete(self.session, row)  # also drops its name from clients' audiences
            self.report.add("deleted", f"integration {tenant.slug}/{row.name}")
            for client in users:
                self.report.add(
                    "changed", f"client {tenant.slug}/{client.client_id}", ["audiences"]
                )

    def clients(
        self,
        tenant: Tenant,
        where: Where,
        entries: list[dict[str, Any]],
        known: set[str] | None,
    ) -> None:
        """``known``: the integrations the tenant will have (None: the ones it has now)."""
        if known is None:
            known = {row.name for row in integrations.list_all(self.session)}
        existing = {row.client_id: row for row in clients.list_all(self.session)}
        for index, entry in enumerate(entries):
            at: Where = (*where, "clients", index)
            for position, name in enumerate(entry["audiences"]):
                if name not in known:
                    message = f"no integration named {name!r} in this tenant"
                    raise self.document.error((*at, "audiences", position), message)
            data = {key: value for key, value in entry.items() if key != "secret"}
            ref: SecretRef | None = entry.get("secret")
            subject = f"client {tenant.slug}/{entry['client_id']}"
            with self.at(at):
                row = existing.pop(entry["client_id"], None)
                if row is None:
                    secret, source = None, "file"
                    if ref is not None:
                        secret = ref.value or generate_token(clients.CLIENT_SECRET_PREFIX)
                        source = _source(ref) if ref.env else "file:generate"
                    row, generated = clients.create(
                        self.session, self.keyring, tenant, data, secret, source
                    )
                    shown = generated or (secret if ref is not None and ref.env is None else None)
                    self.report.add("created", subject, secret=shown)
                    continue
                changed = clients.update(self.session, row, data)
                shown = None
                if ref is not None and ref.env is not None:
                    if clients.set_secret(self.keyring, row, ref.value, _source(ref)):
                        changed.append("secret")
                elif ref is not None and not (
                    row.secret_hash and row.secret_source == "file:generate"
                ):
                    shown = generate_token(clients.CLIENT_SECRET_PREFIX)
                    clients.set_secret(self.keyring, row, shown, "file:generate")
                    changed.append("secret")
                self.report.add("changed" if changed else "unchanged", subject, changed, shown)
        for row in existing.values():
            clients.delete(self.session, row)
            self.report.add("deleted", f"client {tenant.slug}/{row.client_id}")

    def grants(self, tenant: Tenant, where: Where, entries: list[dict[str, Any]]) -> None:
        self.session.flush()  # new clients and integrations need their ids
        by_client_id = {row.client_id: row for row in clients.list_all(self.session)}
        by_pk = {row.id: row for row in by_client_id.values()}
        active = integrations.list_grants(self.session)
        for index, entry in enumerate(entries):
            if "grants" not in entry:
                continue
            integration = integrations.find(self.session, entry["name"])
            wanted = set()
            for position, client_id in enumerate(entry["grants"]):
                client = by_client_id.get(client_id)
                if client is None:
                    at: Where = (*where, "integrations", index, "grants", position)
                    raise self.document.error(at, f"no client {client_id!r} in this tenant")
                wanted.add(client.id)
                _, created = integrations.grant(self.session, client, integration)
                subject = f"grant {tenant.slug}/{integration.name} -> {client_id}"
                self.report.add("created" if created else "unchanged", subject)
            for row in active:
                if row.integration_pk == integration.id and row.client_pk not in wanted:
                    integrations.revoke(row)
                    client_id = by_pk[row.client_pk].client_id
                    self.report.add(
                        "revoked", f"grant {tenant.slug}/{integration.name} -> {client_id}"
                    )
