"""Validation of the JWTs a tenant's identity provider issues: the one place that says yes.

Userinfo, logout and back-channel logout use it now; token exchange (RFC 8693 subject and
actor tokens) uses it next, so the API is a ``TokenValidator`` per app instance with one method
per kind of token (``access_token``, ``id_token_hint``, ``logout_token``) over one strict core.

The rules (RFC 8725, JWT BCP; RFC 9068, JWT access tokens; OpenID Connect Core and Back-Channel
Logout 1.0), each a refusal with a reason the edge renders (``InvalidToken``, 401):

- The algorithm is pinned per issuer (``IdentityProvider.algorithms``); ``none`` and every
  ``HS*`` algorithm are refused whatever the configuration says: an asymmetric issuer never
  shares a secret with us, so an HMAC token is a key-confusion attack (RFC 8725 §3.1-3.2).
- A ``crit`` header is refused: idbridge understands no JWS extension (RFC 7515 §4.1.11).
- ``iss`` equals the tenant's issuer exactly: no prefix, suffix or trailing-slash tolerance.
- ``aud`` is required and must name one of the tenant's audiences (RFC 9068 §4).
- ``exp`` is required, ``exp``/``nbf``/``iat`` are checked with ``LEEWAY`` seconds of leeway; an
  access token valid for longer than ``IDBRIDGE_SESSION_MAX_AGE`` (``exp`` - ``iat``) is refused.
- Identity is (issuer, subject claim); no email claim is ever used to find a user.

What is an access token (the rule token exchange also relies on): a token whose header
``typ`` is absent, ``JWT`` or ``at+jwt`` (RFC 9068 §2.1), which carries no ``nonce``,
``at_hash`` or ``c_hash`` (those only exist in ID tokens, OIDC Core §2 and §3.3.2.11), no
``events`` (a logout or security event token), and whose payload ``typ``, when present (Keycloak
marks its tokens ``Bearer``, ``ID``, ``Refresh``), is ``Bearer``. ID tokens are refused a second
time by ``aud``, which names a client, not the tenant's API; refresh tokens are usually opaque
and fail to parse, and JWT refresh tokens are refused by their ``typ``.

Signing keys come from the issuer's JWKS, fetched through ``app.outbound`` (timeouts, size cap,
private addresses refused unless allowed) and cached by ``kid`` per app instance
(``JwksCache``). Fresh keys are reused for ``KEYS_FRESH_FOR`` seconds; an unknown ``kid``
triggers a refetch at most once per ``REFRESH_COOLDOWN``; when the endpoint fails, is slow, or
answers HTML or garbage, the last good keys stay in use for ``IDBRIDGE_JWKS_MAX_STALE`` seconds,
then tokens answer 503 (``KeysUnavailable``) rather than being accepted on stale trust. Keys for
encryption (``use: enc``), of a type the algorithm cannot use, or too weak are ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from flask import Flask, current_app

from app import outbound
from app.errors import DomainError
from app.models import IdentityProvider
from app.settings import Settings

EXTENSION = "idbridge.tokens"
LEEWAY = 60  # seconds, for exp / nbf / iat
REFRESH_COOLDOWN = 60.0  # seconds between two JWKS fetches of one issuer, whatever triggers them
KEYS_FRESH_FOR = 300.0  # seconds a fetched JWKS is used before it is fetched again
JWKS_TIMEOUT = (3.05, 5.0)  # (connect, read) seconds
JWKS_MAX_BYTES = 256 * 1024
MAX_KEYS = 50
MIN_RSA_BITS = 2048
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_MAX_AGE = 600  # seconds, for logout tokens without ``exp``

# algorithm -> (JWK kty, curve or None): the keys each pinned algorithm may use (RFC 7518 §3)
KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
ACCESS_TOKEN_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
LOGOUT_TOKEN_TYPES = frozenset({"jwt", "logout+jwt", "application/logout+jwt"})
ID_TOKEN_TYPES = frozenset({"jwt"})
ID_TOKEN_ONLY_CLAIMS = ("nonce", "at_hash", "c_hash")

log = logging.getLogger("idbridge.tokens")


class InvalidToken(DomainError):
    """The token is not one idbridge accepts here; ``message`` says why (RFC 6750 §3.1)."""

    code = "invalid_token"
    status = 401


class KeysUnavailable(DomainError):
    """The issuer's signing keys cannot be had (endpoint down, slow or garbage, and the last
    good keys are older than ``IDBRIDGE_JWKS_MAX_STALE``): fail closed, retry later."""

    code = "temporarily_unavailable"
    status = 503
    retry_after = 5


@dataclass(frozen=True)
class TrustedIssuer:
    """A tenant's identity provider as token validation sees it (DOMAIN.md)."""

    issuer: str
    jwks_uri: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    subject_claim: str = "sub"

    @classmethod
    def of(cls, provider: IdentityProvider | None) -> TrustedIssuer:
        """The tenant's issuer; a tenant without one trusts no token at all."""
        if provider is None or not provider.issuer or not provider.jwks_uri:
            raise InvalidToken("this tenant trusts no identity provider")
        return cls(
            issuer=provider.issuer,
            jwks_uri=provider.jwks_uri,
            audiences=tuple(provider.audiences or ()),
            algorithms=tuple(provider.algorithms or ()),
            subject_claim=provider.subject_claim or "sub",
        )


@dataclass(frozen=True)
class VerifiedToken:
    """A token that passed every check: its claims and the values callers key on."""

    claims: Mapping[str, Any]
    subject: str
    session_id: str | None
    issued_at: datetime
    expires_at: datetime | None
    auth_time: datetime | None

    @property
    def session_key(self) -> str | None:
        """What identifies the user's login session (CONTRACT §1): ``sid``, else
        ``auth_time``; ``None`` when the token shows neither."""
        if self.session_id:
            return f"sid:{self.session_id}"
        if self.auth_time is not None:
            return f"auth_time:{int(self.auth_time.timestamp())}"
        return None

    @property
    def session_time(self) -> datetime:
        """When that session started: ``auth_time``, else ``iat``."""
        return self.auth_time or self.issued_at


def _timestamp(claims: Mapping[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"the {name} claim is not a number")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidToken(f"the {name} claim is out of range") from None


def _header(token: str) -> dict[str, Any]:
    """The JOSE header, read before anything is trusted, to pick the key and refuse early."""
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        raise InvalidToken("the token is not a signed JWT") from None
    if not isinstance(header, dict):
        raise InvalidToken("the token is not a signed JWT")
    return header


# --- signing keys -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    kid: str
    kty: str
    crv: str | None
    alg: str | None
    key: Any

    def fits(self, algorithm: str) -> bool:
        kty, crv = KEY_TYPES[algorithm]
        if self.alg and self.alg != algorithm:
            return False
        if self.kty != kty:
            return False
        if self.kty == "OKP":
            return self.crv in ("Ed25519", "Ed448")
        return crv is None or self.crv == crv


@dataclass
class _KeySet:
    keys: list[_Key] = field(default_factory=list)
    fetched_at: float | None = None  # last good answer
    attempted_at: float | None = None  # last fetch, good or not
    lock: threading.Lock = field(default_factory=threading.Lock)


def parse_jwks(document: Any) -> list[_Key]:
    """The usable signature-verification keys of a JWK Set (RFC 7517 §5); the rest ignored.

    Ignored: entries that are not objects, keys for encryption (``use`` other than ``sig``,
    RFC 7517 §4.2) or whose ``key_ops`` exclude ``verify`` (§4.3), symmetric or unknown key
    types, malformed keys, RSA keys under 2048 bits (RFC 8725 §3.5), anything past ``MAX_KEYS``.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return []
    usable = []
    for entry in document["keys"][:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        operations = entry.get("key_ops")
        if operations is not None and (
            not isinstance(operations, list) or "verify" not in operations
        ):
            continue
        alg = entry.get("alg")
        if alg is not None and alg not in KEY_TYPES:
            continue
        kid = entry.get("kid", "")
        if not isinstance(kid, str):
            continue
        public = {name: value for name, value in entry.items() if name != "d"}
        try:
            key = jwt.PyJWK(public).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue
        if entry["kty"] == "RSA" and getattr(key, "key_size", 0) < MIN_RSA_BITS:
            continue
        crv = entry.get("crv") if isinstance(entry.get("crv"), str) else None
        usable.append(_Key(kid=kid, kty=entry["kty"], crv=crv, alg=alg, key=key))
    return usable


class JwksCache:
    """Signing keys of every issuer this app instance has seen, by JWKS URI then ``kid``.

    One per app (``TokenValidator``), never module-level: two apps in one process keep their
    own. ``clock`` is monotonic seconds (tests drive it); each issuer has its own lock, so one
    slow endpoint holds up only the tokens of its own issuer.
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        max_stale: float,
        timeout: tuple[float, float] = JWKS_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allow_private = allow_private
        self.max_stale = max_stale
        self.timeout = timeout
        self.clock = clock
        self._sets: dict[str, _KeySet] = {}
        self._lock = threading.Lock()

    def keys_for(self, jwks_uri: str, kid: str | None, algorithm: str) -> list[Any]:
        """The keys that may verify a token with this ``kid`` and ``alg``; empty when none.

        Raises ``KeysUnavailable`` when no keys younger than ``max_stale`` can be had.
        """
        with self._lock:
            key_set = self._sets.setdefault(jwks_uri, _KeySet())
        with key_set.lock:
            now = self.clock()
            if key_set.fetched_at is None or now - key_set.fetched_at >= KEYS_FRESH_FOR:
                self._refresh(jwks_uri, key_set, now)
            found = self._matching(key_set, kid, algorithm)
            known = {key.kid for key in key_set.keys}
            if not found and (kid is None or kid not in known):
                self._refresh(jwks_uri, key_set, now)  # a rotation: once per cool-down
                found = self._matching(key_set, kid, algorithm)
            if key_set.fetched_at is None or now - key_set.fetched_at > max(
                self.max_stale, KEYS_FRESH_FOR
            ):
                raise KeysUnavailable("the identity provider's signing keys are unavailable")
            return found

    @staticmethod
    def _matching(key_set: _KeySet, kid: str | None, algorithm: str) -> list[Any]:
        return [
            key.key
            for key in key_set.keys
            if (kid is None or key.kid == kid) and key.fits(algorithm)
        ]

    def _refresh(self, jwks_uri: str, key_set: _KeySet, now: float) -> None:
        """Fetch the JWKS unless a fetch happened within the cool-down; keep the old keys when
        the answer is not a usable JWK Set."""
        if key_set.attempted_at is not None and now - key_set.attempted_at < REFRESH_COOLDOWN:
            return
        key_set.attempted_at = now
        try:
            response = outbound.request(
                "GET",
                jwks_uri,
                allow_private=self.allow_private,
                timeout=self.timeout,
                max_bytes=JWKS_MAX_BYTES,
                headers={"Accept": "application/json, application/jwk-set+json"},
            )
        except (outbound.OutboundFailed, outbound.OutboundRefused) as exc:
            log.warning("JWKS fetch failed: %s", exc)
            return
        keys: list[_Key] = []
        if response.status_code == 200:
            try:
                keys = parse_jwks(response.json())
            except ValueError:
                keys = []
        if not keys:
            log.warning(
                "JWKS answer unusable: status %s, no usable signing key", response.status_code
            )
            return
        key_set.keys, key_set.fetched_at = keys, now


# --- the validator ------------------------------------------------------------------------


class TokenValidator:
    """Validates tokens of trusted issuers for one app instance (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        timeout: tuple[float, float] = JWKS_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = JwksCache(
            allow_private=settings.allow_private_urls,
            max_stale=settings.jwks_max_stale,
            timeout=timeout,
            clock=clock,
        )
        self.max_lifetime = settings.session_max_age  # seconds

    def access_token(self, issuer: TrustedIssuer, token: str) -> VerifiedToken:
        """An access token for the tenant's API (RFC 9068; the rule in the module docstring),
        valid for at most ``IDBRIDGE_SESSION_MAX_AGE`` (``app.revocation`` sweeps after it)."""
        claims = self._verify(issuer, token, types=ACCESS_TOKEN_TYPES, audiences=issuer.audiences)
        if any(name in claims for name in ID_TOKEN_ONLY_CLAIMS):
            raise InvalidToken("an ID token is not an access token")
        if "events" in claims:
            raise InvalidToken("a security event token is not an access token")
        payload_type = claims.get("typ")
        if payload_type is not None and (
            not isinstance(payload_type, str) or payload_type.lower() != "bearer"
        ):
            raise InvalidToken("not an access token")
        verified = self._result(issuer, claims)
        if claims["exp"] - claims["iat"] > self.max_lifetime:  # both numbers (``_result``)
            raise InvalidToken("the token is valid for longer than this deployment accepts")
        return verified

    def id_token_hint(self, issuer: TrustedIssuer, token: str) -> VerifiedToken:
        """An ID token given as ``id_token_hint`` (RP-Initiated Logout 1.0 §2): signature and
        ``iss`` checked, any ``aud`` accepted, and an expired one still accepted (the spec
        says the OP should accept it even when expired)."""
        claims = self._verify(
            issuer, token, types=ID_TOKEN_TYPES, audiences=None, check_expiry=False
        )
        return self._result(issuer, claims)

    def logout_token(
        self, issuer: TrustedIssuer, token: str, audiences: Collection[str]
    ) -> VerifiedToken:
        """A Back-Channel Logout 1.0 logout token, validated per §2.6: ``aud`` one of
        ``audiences``, ``iat`` and ``jti`` present, the back-channel logout event, ``sid`` and/or
        ``sub``, and no ``nonce``. Replay of ``jti`` is the caller's to refuse (it owns the
        store)."""
        claims = self._verify(
            issuer,
            token,
            types=LOGOUT_TOKEN_TYPES,
            audiences=tuple(audiences),
            required=("iat", "jti", "events"),
            require_expiry=False,
        )
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(
            events.get(BACKCHANNEL_LOGOUT_EVENT), dict
        ):
            raise InvalidToken("the token carries no back-channel logout event")
        if "nonce" in claims:
            raise InvalidToken("a logout token must not carry a nonce")
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise InvalidToken("the jti claim is missing")
        sid, sub = claims.get("sid"), claims.get(issuer.subject_claim)
        if not (isinstance(sid, str) and sid) and not (isinstance(sub, str) and sub):
            raise InvalidToken("a logout token names a sid, a subject or both")
        if "exp" not in claims and claims["iat"] < time.time() - LOGOUT_TOKEN_MAX_AGE - LEEWAY:
            raise InvalidToken("the logout token is too old")
        subject = sub if isinstance(sub, str) else ""
        return self._result(issuer, claims, subject=subject)

    # -- the strict core --

    def _verify(
        self,
        issuer: TrustedIssuer,
        token: str,
        *,
        types: Collection[str],
        audiences: Collection[str] | None,
        check_expiry: bool = True,
        require_expiry: bool = True,
        required: Collection[str] = ("iat",),
    ) -> dict[str, Any]:
        if not token or len(token) > 16384 or token.count(".") != 2:
            raise InvalidToken("the token is not a signed JWT")
        header = _header(token)
        algorithm = header.get("alg")
        if (
            not isinstance(algorithm, str)
            or algorithm not in KEY_TYPES
            or algorithm not in issuer.algorithms
        ):
            raise InvalidToken("the token's algorithm is not allowed for this issuer")
        if "crit" in header:
            raise InvalidToken("the token has a critical header idbridge does not understand")
        token_type = header.get("typ")
        if token_type is not None and (
            not isinstance(token_type, str) or token_type.lower() not in types
        ):
            raise InvalidToken("the token's type is not accepted here")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the token's key id is malformed")
        keys = self.keys.keys_for(issuer.jwks_uri, kid, algorithm)
        if not keys:
            raise InvalidToken("the token is signed with an unknown key")
        claims = self._decode(token, keys, algorithm, check_expiry, require_expiry, required)
        if claims.get("iss") != issuer.issuer:
            raise InvalidToken("the token's issuer is not trusted here")
        if audiences is not None:
            audience = claims.get("aud")
            presented = [audience] if isinstance(audience, str) else audience
            if not isinstance(presented, list) or not any(
                isinstance(item, str) and item in audiences for item in presented
            ):
                raise InvalidToken("the token is not meant for this audience")
        return claims

    @staticmethod
    def _decode(
        token: str,
        keys: list[Any],
        algorithm: str,
        check_expiry: bool,
        require_expiry: bool,
        required: Collection[str],
    ) -> dict[str, Any]:
        options: dict[str, Any] = {
            "verify_signature": True,
            "verify_exp": check_expiry,
            "verify_nbf": check_expiry,
            "verify_iat": True,
            "verify_aud": False,  # checked by _verify against the tenant's list
            "verify_iss": False,  # checked by _verify: exact string equality
            "require": [*required, *(["exp"] if require_expiry else [])],
        }
        for key in keys:
            try:
                return jwt.decode(
                    token, key=key, algorithms=[algorithm], options=options, leeway=LEEWAY
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise InvalidToken("the token has expired") from None
            except jwt.ImmatureSignatureError:
                raise InvalidToken("the token is not valid yet") from None
            except jwt.MissingRequiredClaimError as exc:
                raise InvalidToken(f"the {exc.claim} claim is missing") from None
            except jwt.PyJWTError:
                raise InvalidToken("the token is malformed") from None
        raise InvalidToken("the token's signature does not verify")

    @staticmethod
    def _result(
        issuer: TrustedIssuer, claims: dict[str, Any], subject: str | None = None
    ) -> VerifiedToken:
        if subject is None:
            subject = claims.get(issuer.subject_claim)
            if not isinstance(subject, str) or not subject or len(subject) > 255:
                raise InvalidToken(f"the {issuer.subject_claim} claim is missing or malformed")
        sid = claims.get("sid")
        if sid is not None and (not isinstance(sid, str) or len(sid) > 255):
            raise InvalidToken("the sid claim is malformed")
        issued_at = _timestamp(claims, "iat")
        if issued_at is None:
            raise InvalidToken("the iat claim is missing")
        return VerifiedToken(
            claims=claims,
            subject=subject,
            session_id=sid or None,
            issued_at=issued_at,
            expires_at=_timestamp(claims, "exp"),
            auth_time=_timestamp(claims, "auth_time"),
        )


def init_app(flask_app: Flask, settings: Settings) -> TokenValidator:
    """One validator (and key cache) per app instance, kept in ``app.extensions``."""
    validator = TokenValidator(settings)
    flask_app.extensions[EXTENSION] = validator
    return validator


def of(flask_app: Flask) -> TokenValidator:
    return flask_app.extensions[EXTENSION]


def current() -> TokenValidator:
    """The validator of the app handling this request."""
    return current_app.extensions[EXTENSION]
