"""The one typed settings object, read from the ``IDBRIDGE_*`` environment (CONTRACT §5).

Every setting is documented where it is defined (the ``doc`` metadata is also what the README's
configuration reference is checked against). A bad value stops the start with a sentence that
names the variable: ``SettingsError`` is the only exception this module raises.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "IDBRIDGE_"
SECRET_KEY_FILE = "secret_key"
MIN_SECRET_LENGTH = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_SESSION_AGE = 90 * 86400  # seconds: the most IDBRIDGE_SESSION_MAX_AGE may say


class SettingsError(ValueError):
    """A setting has a value idbridge cannot start with; the message names it."""


def _setting(default: Any, doc: str, secret: bool = False) -> Any:
    return field(default=default, metadata={"doc": doc, "secret": secret})


@dataclass(frozen=True)
class Settings:
    instance_path: str = _setting(
        "instance", "Folder for the SQLite database, the demo's secret key and other local state."
    )
    database_url: str = _setting(
        "",
        "SQLAlchemy URL of the store. Default: a SQLite file `idbridge.db` in the instance "
        "folder. PostgreSQL: `postgresql+psycopg://user:password@host:5432/dbname`.",
    )
    redis_url: str = _setting(
        "",
        "Redis URL for what several instances share (`redis://host:6379/0`): revocations, "
        "`jti`s, webhook-id claims, the upstream-token cache, rate limits. Unset: "
        "single-instance mode.",
    )
    redis_timeout: float = _setting(
        0.5,
        "Seconds every Redis call may take (connect, read, write) before it counts as failed: "
        "checks that guard security then answer 503, caches are bypassed.",
    )
    rate_limit_client: str = _setting(
        "200/second",
        "Requests one caller may make per tenant at the token endpoint (per `client_id`), at "
        "the webhooks and at SCIM (per credential), in flask-limiter notation "
        "(`100/second;5000/minute`); empty: no limit.",
    )
    rate_limit_tenant: str = _setting(
        "1000/second",
        "Requests all callers together may make per tenant at each of the token endpoint, "
        "the webhooks and SCIM; empty: no limit.",
    )
    secret_key: str = _setting(
        "",
        "At least 32 characters; encrypts secrets at rest and keys the token hashes. Unset: "
        "read from `secret_key` in the instance folder (which `idbridge demo` creates).",
        secret=True,
    )
    admin_token: str = _setting(
        "",
        "Operator bearer token for `/admin/v1` (at least 32 characters). Unset: the admin API "
        "refuses every call.",
        secret=True,
    )
    public_url: str = _setting(
        "http://127.0.0.1:8000",
        "External base URL of this deployment; a tenant's issuer is `{public_url}/t/{slug}`.",
    )
    smtp_url: str = _setting(
        "",
        "Outgoing mail server: `smtp://host:25`, `smtp+starttls://user:pass@host:587`, "
        "`smtps://user:pass@host:465`.",
    )
    allow_private_urls: bool = _setting(
        False,
        "Allow outbound calls (JWKS, upstream token endpoints, connectors) to non-public "
        "addresses (loopback, private, link-local, ...), and such literal hosts or `localhost` "
        "in the URLs an operator sets for them. Off by default; tests and the demo turn it on.",
    )
    log_level: str = _setting("INFO", "One of DEBUG, INFO, WARNING, ERROR.")
    db_pool_size: int = _setting(5, "PostgreSQL connections kept per worker process.")
    db_timeout: float = _setting(
        5.0, "Seconds to wait for a database lock or a pooled connection before answering 503."
    )
    jwks_max_stale: float = _setting(
        3600.0,
        "Seconds an identity provider's last good signing keys (JWKS) stay in use while its "
        "endpoint fails or answers garbage; after that its tokens answer 503.",
    )
    outbox_interval: float = _setting(
        15.0,
        "Seconds between two runs of the outbox job (mail and identity-provider calls waiting "
        "to be sent), run by one `idbridge serve` instance at a time; 0 turns the job off. "
        "`create_app` alone never starts it.",
    )
    session_max_age: int = _setting(
        86400,
        "Seconds the longest login session at the identity provider can last (Keycloak's SSO "
        "Session Max, Okta's maximum session lifetime). A session logged out at idbridge stays "
        "ended that long: every token naming its `sid` is refused, whatever its `iat`. Access "
        "tokens valid for longer than this (`exp` - `iat`) are refused.",
    )
    trusted_proxies: str = _setting(
        "",
        "Comma-separated addresses or networks (`10.0.0.5, 10.1.0.0/16`) of the reverse "
        "proxies whose `X-Forwarded-For`/`-Proto`/`-Host`/`-Port`/`-Prefix` headers are "
        "believed (one proxy hop). Unset: no forwarded header from anyone is believed.",
    )

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Read ``IDBRIDGE_<NAME>`` variables, apply ``overrides`` (tests), validate."""
        environ = os.environ if environ is None else environ
        overrides = dict(overrides or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise SettingsError(f"unknown setting {unknown[0]!r}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            variable = ENV_PREFIX + f.name.upper()
            if f.name in overrides:
                values[f.name] = overrides[f.name]
            elif variable in environ:
                values[f.name] = _parse(variable, environ[variable], type(f.default))
        return cls(**values)._validated()

    def _validated(self) -> Settings:
        changes: dict[str, Any] = {}
        instance = Path(self.instance_path).absolute()
        changes["instance_path"] = str(instance)
        if not self.database_url:
            changes["database_url"] = f"sqlite:///{instance / 'idbridge.db'}"
        elif not self.database_url.startswith(("sqlite", "postgresql")):
            raise SettingsError(
                "IDBRIDGE_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL"
            )
        elif self.database_url.startswith("postgresql") and "+psycopg" not in self.database_url:
            changes["database_url"] = self.database_url.replace(
                "postgresql://", "postgresql+psycopg://", 1
            )
        if self.redis_url and urlsplit(self.redis_url).scheme not in ("redis", "rediss", "unix"):
            raise SettingsError("IDBRIDGE_REDIS_URL must start with redis://, rediss:// or unix://")
        if not 0 < self.redis_timeout <= 10:
            raise SettingsError("IDBRIDGE_REDIS_TIMEOUT must be between 0 and 10 seconds")
        for name in ("rate_limit_client", "rate_limit_tenant"):
            _check_limits(ENV_PREFIX + name.upper(), getattr(self, name))
        secret_key = self.secret_key or _read_secret_key_file(instance)
        if not secret_key:
            raise SettingsError(
                "IDBRIDGE_SECRET_KEY is not set (and the instance folder has no secret_key file): "
                'set it to a random string of at least 32 characters, e.g. `python -c "import '
                'secrets; print(secrets.token_urlsafe(32))"`'
            )
        if len(secret_key) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"IDBRIDGE_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters long"
            )
        changes["secret_key"] = secret_key
        if self.admin_token and len(self.admin_token) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"IDBRIDGE_ADMIN_TOKEN must be at least {MIN_SECRET_LENGTH} characters long"
            )
        public = urlsplit(self.public_url)
        if public.scheme not in ("http", "https") or not public.netloc or public.query:
            raise SettingsError(
                "IDBRIDGE_PUBLIC_URL must be an absolute http(s) URL without a query, "
                "e.g. https://idbridge.example.com"
            )
        changes["public_url"] = self.public_url.rstrip("/")
        if self.smtp_url and urlsplit(self.smtp_url).scheme not in (
            "smtp",
            "smtps",
            "smtp+starttls",
        ):
            raise SettingsError(
                "IDBRIDGE_SMTP_URL must start with smtp://, smtp+starttls:// or smtps://"
            )
        if self.log_level.upper() not in LOG_LEVELS:
            raise SettingsError(f"IDBRIDGE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        changes["log_level"] = self.log_level.upper()
        if not 1 <= self.db_pool_size <= 100:
            raise SettingsError("IDBRIDGE_DB_POOL_SIZE must be between 1 and 100")
        if not 0 < self.db_timeout <= 120:
            raise SettingsError("IDBRIDGE_DB_TIMEOUT must be between 0 and 120 seconds")
        if not 0 <= self.jwks_max_stale <= 86400:
            raise SettingsError("IDBRIDGE_JWKS_MAX_STALE must be between 0 and 86400 seconds")
        if not 0 <= self.outbox_interval <= 3600:
            raise SettingsError("IDBRIDGE_OUTBOX_INTERVAL must be between 0 and 3600 seconds")
        if not 300 <= self.session_max_age <= MAX_SESSION_AGE:
            raise SettingsError(
                f"IDBRIDGE_SESSION_MAX_AGE must be between 300 and {MAX_SESSION_AGE} seconds"
            )
        try:
            self.proxy_networks()
        except ValueError:
            raise SettingsError(
                "IDBRIDGE_TRUSTED_PROXIES must be comma-separated IP addresses or networks, "
                "e.g. 10.0.0.5, 10.1.0.0/16"
            ) from None
        return dataclasses.replace(self, **changes)

    def proxy_networks(self) -> list[IPv4Network | IPv6Network]:
        """``trusted_proxies`` parsed (``ValueError`` on a bad entry)."""
        return [
            ip_network(part.strip()) for part in self.trusted_proxies.split(",") if part.strip()
        ]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def __repr__(self) -> str:  # never print secrets, even in a traceback
        shown = {
            f.name: (
                "***" if f.metadata["secret"] and getattr(self, f.name) else getattr(self, f.name)
            )
            for f in fields(self)
        }
        return f"Settings({shown})"


def _parse(variable: str, raw: str, kind: type) -> Any:
    raw = raw.strip()
    if kind is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("", "0", "false", "no", "off"):
            return False
        raise SettingsError(f"{variable} must be true or false, not {raw!r}")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise SettingsError(f"{variable} must be a number, not {raw!r}") from None
    return raw


def _check_limits(variable: str, value: str) -> None:
    from limits import parse_many

    try:
        if value:
            parse_many(value)
    except ValueError:
        raise SettingsError(
            f"{variable} must be limits like '50/second;1000/minute', not {value!r}"
        ) from None


def _read_secret_key_file(instance: Path) -> str:
    path = instance / SECRET_KEY_FILE
    return path.read_text().strip() if path.is_file() else ""


def ensure_secret_key_file(instance: Path) -> None:
    """Create the instance folder's secret key once (used by ``idbridge demo``), mode 0600."""
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / SECRET_KEY_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")


def documented_settings() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: the README reference table."""
    return [
        (ENV_PREFIX + f.name.upper(), str(f.default), f.metadata["doc"]) for f in fields(Settings)
    ]
