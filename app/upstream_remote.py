"""Handlers where idbridge is a client of the upstream's own authorization server, and the
registry of every integration kind (``handler_for``).

- ``rfc8693``: an RFC 8693 §2.1 token exchange request to ``token_endpoint``, in one of two
  flows (the integration's ``flow``): **brokered** forwards the user's identity-provider token
  as ``subject_token`` (the upstream trusts the IdP), and an actor token as received;
  **federated** mints a short-lived JWT for the user's upstream subject, signed with the
  tenant's key (the upstream trusts the tenant's issuer), with the delegation chain as its
  ``act`` and, when there is an actor, an actor token naming idbridge's client at the upstream
  (§4.1: idbridge is then the current actor, the broker the one before).
- ``salesforce``: the Salesforce OAuth 2.0 token exchange flow (``POST
  /services/oauth2/token`` with ``grant_type``, ``subject_token``, ``subject_token_type``,
  ``client_id``, ``client_secret`` when set, ``scope``, ``token_handler``); its answer carries
  no ``expires_in``, so the integration's ``token_lifetime`` applies, and ``instance_url`` /
  ``api_instance_url`` go on to the broker, which calls the REST API there.

Client authentication to the upstream (``settings.client_auth``): ``client_secret_basic``
(default, RFC 6749 §2.3.1, form-encoded before base64), ``client_secret_post``, or
``private_key_jwt`` (RFC 7523 §2.2: ``iss`` = ``sub`` = the integration's ``client_id``,
``aud`` = the token endpoint, signed with the tenant's key, which the upstream registers from
the tenant's ``jwks.json``). Every call goes through ``app.outbound`` (timeouts, SSRF guard,
size cap).

Answers (``read_answer``): an upstream statement that the user does not exist (error codes in
``settings.not_provisioned_errors``, regular expressions over ``error_description`` in
``settings.not_provisioned_patterns``; defaults per kind below) is ``user_not_provisioned``;
another 4xx is ``invalid_grant`` naming the integration (the upstream's error code, never its
description); timeouts, connection errors, 408/429/5xx, a body that is not a JSON object, no
``access_token`` or an ``expires_in`` that is not a positive number are ``UpstreamUnavailable``
(503 behind the breaker, ``app.upstream_guard``).
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import requests

from app import outbound
from app.oauth_errors import InvalidGrant, InvalidRequest, UserNotProvisioned
from app.upstream import (
    ACCESS_TOKEN_TYPE,
    JwtHandler,
    SnowflakeHandler,
    Target,
    UpstreamHandler,
    UpstreamRequest,
    UpstreamToken,
    UpstreamUnavailable,
    act_chain,
    require_signer,
)

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FEDERATED_LIFETIME = 60  # seconds: the minted subject token is used once, right away
PASS_THROUGH = {"salesforce": ("instance_url", "api_instance_url")}
_NO_SUCH_USER = (
    r"(?i)\b(no|unknown) (such )?(user|subject)\b",
    r"(?i)\buser\b.*\b(not found|does not exist|doesn't exist|not provisioned|no match)",
)
NOT_PROVISIONED_DEFAULTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # idbridge itself (and servers following CONTRACT §3) say user_not_provisioned
    "rfc8693": (("user_not_provisioned", "unknown_user"), _NO_SUCH_USER),
    # Salesforce answers invalid_grant; only the description tells an unmapped user apart
    "salesforce": ((), _NO_SUCH_USER),
}
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _scopes(target: Target, scopes: Sequence[str]) -> tuple[str, ...]:
    """Mapped through ``scope_mapping`` where it names them, else as asked (like ``jwt``)."""
    return JwtHandler().upstream_scopes(target, scopes)


def _expires_at(body: dict[str, Any], target: Target, now: float) -> float:
    value = body.get("expires_in")
    if value is None:
        return now + target.token_lifetime
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise UpstreamUnavailable("the upstream answered an unusable expires_in") from None
    if not seconds > 0 or seconds > 10 * 365 * 86400:
        raise UpstreamUnavailable("the upstream answered a non-positive expires_in")
    return now + seconds


def not_provisioned(target: Target, error: str, description: str) -> bool:
    """Whether the upstream's refusal says the user does not exist there."""
    codes, patterns = NOT_PROVISIONED_DEFAULTS.get(target.kind, ((), ()))
    codes = tuple(target.settings.get("not_provisioned_errors", codes))
    patterns = tuple(target.settings.get("not_provisioned_patterns", patterns))
    if error in codes:
        return True
    return any(re.search(pattern, description[:1000]) for pattern in patterns)


def read_answer(target: Target, response: requests.Response) -> UpstreamToken:
    """The upstream's token, or the refusal or fault it amounts to (module docstring)."""
    status = response.status_code
    if status >= 500 or status in (408, 429):
        raise UpstreamUnavailable(f"the upstream answered {status}")
    try:
        body = response.json()
    except ValueError:
        body = None
    if 400 <= status < 500:
        error = body.get("error") if isinstance(body, dict) else None
        description = body.get("error_description") if isinstance(body, dict) else None
        error = error if isinstance(error, str) else ""
        if not_provisioned(target, error, description if isinstance(description, str) else ""):
            raise UserNotProvisioned(target.name)
        raise InvalidGrant(target.name, error if _ERROR_CODE.fullmatch(error) else "")
    if status != 200 or not isinstance(body, dict):
        raise UpstreamUnavailable(f"the upstream answered {status} without a JSON object")
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise UpstreamUnavailable("the upstream answered no access_token")
    issued = body.get("issued_token_type")
    token_type = body.get("token_type")
    extra = tuple(
        (name, body[name])
        for name in PASS_THROUGH.get(target.kind, ())
        if isinstance(body.get(name), str)
    )
    return UpstreamToken(
        access_token=access_token,
        expires_at=_expires_at(body, target, time.time()),
        issued_token_type=issued if isinstance(issued, str) and issued else ACCESS_TOKEN_TYPE,
        token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
        extra=extra,
    )


def _client_auth(request: UpstreamRequest, form: dict[str, str], headers: dict[str, str]) -> None:
    """Authenticate idbridge to the upstream (module docstring), into ``form``/``headers``."""
    target = request.target
    client_id = target.client_id
    method = target.settings.get("client_auth", "client_secret_basic")
    if method == "private_key_jwt":
        now = int(time.time())
        assertion = require_signer(request).sign(
            {
                "iss": client_id,
                "sub": client_id,
                "aud": target.token_endpoint,
                "iat": now,
                "exp": now + FEDERATED_LIFETIME,
                "jti": uuid.uuid4().hex,
            },
            token_type="JWT",
        )
        form |= {
            "client_id": client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
    elif method == "client_secret_post":
        form |= {"client_id": client_id, "client_secret": request.client_secret}
    else:
        pair = f"{quote(client_id, safe='')}:{quote(request.client_secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()


def _post(request: UpstreamRequest, form: dict[str, str], headers: dict[str, str]) -> UpstreamToken:
    target = request.target
    timeout = float(target.settings.get("timeout", outbound.DEFAULT_TIMEOUT[1]))
    try:
        response = outbound.request(
            "POST",
            target.token_endpoint,
            allow_private=request.allow_private,
            timeout=(min(timeout, outbound.DEFAULT_TIMEOUT[0]), timeout),
            data=form,
            headers={"Accept": "application/json"} | headers,
        )
    except (outbound.OutboundFailed, outbound.OutboundRefused) as exc:
        raise UpstreamUnavailable(str(exc)) from None
    return read_answer(target, response)


class Rfc8693Handler:
    """Any RFC 8693 authorization server, brokered or federated (module docstring)."""

    remote = True

    def upstream_scopes(self, target: Target, scopes: Sequence[str]) -> tuple[str, ...]:
        return _scopes(target, scopes)

    def exchange(self, request: UpstreamRequest) -> UpstreamToken:
        target = request.target
        form: dict[str, str] = {"grant_type": GRANT_TYPE}
        if target.flow == "federated":
            form |= self._federated_tokens(request)
        else:
            form |= {
                "subject_token": request.subject_token,
                "subject_token_type": request.subject_token_type,
            }
            if request.actor_token and request.actor_token_type:
                form |= {
                    "actor_token": request.actor_token,
                    "actor_token_type": request.actor_token_type,
                }
        if target.audience:
            form["audience"] = target.audience
        if target.resource:
            form["resource"] = target.resource
        if request.upstream_scopes:
            form["scope"] = " ".join(request.upstream_scopes)
        requested = target.settings.get("requested_token_type") or request.requested_token_type
        if requested:
            form["requested_token_type"] = str(requested)
        headers: dict[str, str] = {}
        _client_auth(request, form, headers)
        return _post(request, form, headers)

    @staticmethod
    def _federated_tokens(request: UpstreamRequest) -> dict[str, str]:
        """A subject token for the user's upstream subject, and with delegation an actor token
        for idbridge's client at the upstream (RFC 8693 §4.1: the prior chain in ``act``)."""
        target = request.target
        signer = require_signer(request)
        now = int(time.time())
        audience = str(target.settings.get("subject_audience") or target.audience)
        common = {
            "iss": request.issuer,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + FEDERATED_LIFETIME,
        }
        subject: dict[str, Any] = common | {
            "sub": request.upstream_subject,
            "client_id": request.client_id,
            "jti": uuid.uuid4().hex,
        }
        if request.actors:
            subject["act"] = act_chain(request.actors)
        form = {
            "subject_token": signer.sign(subject, "at+jwt"),
            "subject_token_type": JWT_TOKEN_TYPE,
        }
        if request.actors:
            client_id = target.client_id
            actor = common | {"sub": client_id, "client_id": client_id, "jti": uuid.uuid4().hex}
            form |= {
                "actor_token": signer.sign(actor, "at+jwt"),
                "actor_token_type": JWT_TOKEN_TYPE,
            }
        return form


class SalesforceHandler:
    """The Salesforce OAuth 2.0 token exchange flow (module docstring)."""

    remote = True

    def upstream_scopes(self, target: Target, scopes: Sequence[str]) -> tuple[str, ...]:
        return _scopes(target, scopes)

    def exchange(self, request: UpstreamRequest) -> UpstreamToken:
        target = request.target
        if request.actors:
            raise InvalidRequest(f"integration {target.name!r} does not take an actor_token")
        form: dict[str, str] = {
            "grant_type": GRANT_TYPE,
            "subject_token": request.subject_token,
            "subject_token_type": str(
                target.settings.get("subject_token_type") or request.subject_token_type
            ),
            "client_id": target.client_id,
        }
        if request.client_secret:
            form["client_secret"] = request.client_secret
        if request.upstream_scopes:
            form["scope"] = " ".join(request.upstream_scopes)
        if target.settings.get("token_handler"):
            form["token_handler"] = str(target.settings["token_handler"])
        return _post(request, form, {})


HANDLERS: dict[str, UpstreamHandler] = {
    "snowflake": SnowflakeHandler(),
    "jwt": JwtHandler(),
    "rfc8693": Rfc8693Handler(),
    "salesforce": SalesforceHandler(),
}


def handler_for(kind: str) -> UpstreamHandler | None:
    return HANDLERS.get(kind)
