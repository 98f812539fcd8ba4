"""Identity-provider connectors: what idbridge asks the tenant's IdP to do to a user.

One ``Connector`` protocol, three implementations chosen by ``IdentityProvider.connector``:

- ``none``: the IdP is not told anything; idbridge sends its own mail.
- ``keycloak``: the Admin REST API. A token comes from the realm's token endpoint with the
  client credentials grant (RFC 6749 §4.4) for the configured ``client_id`` (a service-account
  client with the ``manage-users`` role); the sealed connector secret is its client secret.
- ``okta``: the Users API with an ``SSWS`` API token (the sealed connector secret).

Each action may be unsupported by an IdP (``supports``); the caller then falls back to
idbridge's own mail where that makes sense. Every call goes through ``app.outbound`` (timeouts,
size cap, private addresses only when allowed). A user the IdP does not know is
``NotFound`` (delete treats it as already done); anything else that goes wrong -- unreachable,
slow, 5xx, refused credentials -- is ``ConnectorUnavailable`` (503 with ``Retry-After``), and
nothing of the IdP's answer is ever shown to the caller or logged.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol
from urllib.parse import quote

import requests

from app import outbound
from app.crypto import Keyring, SecretUnreadable
from app.errors import NotFound, StoreUnavailable
from app.models import IdentityProvider, Tenant
from app.tenants import connector_secret_context

Action = Literal[
    "delete_user",
    "mark_email_verified",
    "send_verification_email",
    "send_password_reset_email",
    "end_sessions",
]
log = logging.getLogger("idbridge.connectors")


class ConnectorUnavailable(StoreUnavailable):
    """The identity provider could not do what was asked now; retry later."""

    retry_after = 30


class Connector(Protocol):
    name: str

    def supports(self, action: Action) -> bool:
        """Whether the IdP itself does ``action`` (else idbridge falls back or skips)."""
        ...

    def delete_user(self, subject: str) -> None:
        """Delete the user; a user the IdP does not know counts as deleted."""
        ...

    def mark_email_verified(self, subject: str) -> None: ...

    def send_verification_email(self, subject: str) -> None: ...

    def send_password_reset_email(self, subject: str) -> None: ...

    def end_sessions(self, subject: str) -> None:
        """Sign the user out at the IdP too (every session), after a logout at idbridge."""
        ...


class NoConnector:
    """``connector: none``: the IdP is left alone; idbridge's own mail does the sending."""

    name = "none"

    def supports(self, action: Action) -> bool:
        return False

    def delete_user(self, subject: str) -> None:
        return None

    def mark_email_verified(self, subject: str) -> None:
        return None

    def send_verification_email(self, subject: str) -> None:
        return None

    def send_password_reset_email(self, subject: str) -> None:
        return None

    def end_sessions(self, subject: str) -> None:
        return None


class _HttpConnector:
    name = "http"

    def __init__(self, settings: dict[str, Any], secret: str, allow_private: bool) -> None:
        base_url = str(settings.get("base_url", "")).rstrip("/")
        if not base_url:
            raise ConnectorUnavailable(f"the {self.name} connector has no base_url configured")
        self.base_url = base_url
        self.settings = settings
        self.secret = secret
        self.allow_private = allow_private

    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return outbound.request(method, url, allow_private=self.allow_private, **kwargs)
        except (outbound.OutboundFailed, outbound.OutboundRefused) as exc:
            log.warning("%s connector call failed: %s", self.name, type(exc).__name__)
            raise ConnectorUnavailable("the identity provider cannot be reached now") from None

    def _check(self, response: requests.Response, what: str, missing_ok: bool = False) -> None:
        if response.status_code < 300:
            return
        if response.status_code == 404:
            if missing_ok:
                return
            raise NotFound("the identity provider does not know this user")
        log.warning("%s connector: %s answered HTTP %s", self.name, what, response.status_code)
        raise ConnectorUnavailable("the identity provider refused the call")


class KeycloakConnector(_HttpConnector):
    """Keycloak Admin REST API (``/admin/realms/{realm}/users/{id}``)."""

    name = "keycloak"

    def supports(self, action: Action) -> bool:
        return True

    def _users_url(self, subject: str) -> str:
        realm = quote(str(self.settings.get("realm", "")), safe="")
        return f"{self.base_url}/admin/realms/{realm}/users/{quote(subject, safe='')}"

    def _headers(self) -> dict[str, str]:
        realm = quote(str(self.settings.get("realm", "")), safe="")
        response = self._call(
            "POST",
            f"{self.base_url}/realms/{realm}/protocol/openid-connect/token",
            data={
                "grant_type": "client_credentials",
                "client_id": str(self.settings.get("client_id", "")),
                "client_secret": self.secret,
            },
        )
        self._check(response, "the token endpoint")
        try:
            token = response.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise ConnectorUnavailable("the identity provider gave no access token") from None
        return {"Authorization": f"Bearer {token}"}

    def delete_user(self, subject: str) -> None:
        response = self._call("DELETE", self._users_url(subject), headers=self._headers())
        self._check(response, "user deletion", missing_ok=True)

    def mark_email_verified(self, subject: str) -> None:
        response = self._call(
            "PUT", self._users_url(subject), headers=self._headers(), json={"emailVerified": True}
        )
        self._check(response, "user update")

    def send_verification_email(self, subject: str) -> None:
        url = self._users_url(subject) + "/send-verify-email"
        self._check(self._call("PUT", url, headers=self._headers()), "send-verify-email")

    def send_password_reset_email(self, subject: str) -> None:
        url = self._users_url(subject) + "/execute-actions-email"
        response = self._call("PUT", url, headers=self._headers(), json=["UPDATE_PASSWORD"])
        self._check(response, "execute-actions-email")

    def end_sessions(self, subject: str) -> None:
        url = self._users_url(subject) + "/logout"
        self._check(self._call("POST", url, headers=self._headers()), "logout", missing_ok=True)


class OktaConnector(_HttpConnector):
    """Okta Users API (``/api/v1/users/{id}``), ``Authorization: SSWS <API token>``.

    Okta has no call that marks an existing user's email verified or re-sends a verification
    mail: those fall back to idbridge (``supports``)."""

    name = "okta"

    def supports(self, action: Action) -> bool:
        return action in ("delete_user", "send_password_reset_email", "end_sessions")

    def _url(self, subject: str, rest: str = "") -> str:
        return f"{self.base_url}/api/v1/users/{quote(subject, safe='')}{rest}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"SSWS {self.secret}", "Accept": "application/json"}

    def delete_user(self, subject: str) -> None:
        # Okta deletes only deactivated users: deactivate first, then delete.
        deactivate = self._url(subject, "/lifecycle/deactivate")
        response = self._call("POST", deactivate, headers=self._headers())
        self._check(response, "deactivation", missing_ok=True)
        if response.status_code == 404:
            return
        response = self._call("DELETE", self._url(subject), headers=self._headers())
        self._check(response, "user deletion", missing_ok=True)

    def mark_email_verified(self, subject: str) -> None:
        return None

    def send_verification_email(self, subject: str) -> None:
        return None

    def send_password_reset_email(self, subject: str) -> None:
        url = self._url(subject, "/lifecycle/reset_password")
        response = self._call("POST", url, headers=self._headers(), params={"sendEmail": "true"})
        self._check(response, "reset_password")

    def end_sessions(self, subject: str) -> None:
        # Users API: DELETE /api/v1/users/{id}/sessions clears every IdP session of the user.
        response = self._call("DELETE", self._url(subject, "/sessions"), headers=self._headers())
        self._check(response, "clear sessions", missing_ok=True)


def for_tenant(tenant: Tenant, keyring: Keyring, allow_private: bool) -> Connector:
    """The connector configured for ``tenant`` (``none`` without identity-provider settings)."""
    idp: IdentityProvider | None = tenant.identity_provider
    if idp is None or idp.connector == "none":
        return NoConnector()
    try:
        secret = (
            keyring.open(idp.connector_secret_sealed, connector_secret_context(tenant))
            if idp.connector_secret_sealed
            else ""
        )
    except SecretUnreadable:  # IDBRIDGE_SECRET_KEY changed: an operator must set it again
        raise ConnectorUnavailable("the connector's secret cannot be read") from None
    settings = dict(idp.connector_settings or {})
    if idp.connector == "keycloak":
        return KeycloakConnector(settings, secret, allow_private)
    if idp.connector == "okta":
        return OktaConnector(settings, secret, allow_private)
    raise ConnectorUnavailable(f"unknown connector {idp.connector!r}")
