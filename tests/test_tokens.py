"""Token validation (``app.tokens``) against a real JWKS endpoint and real signatures.

THREATS.md "Userinfo and logout" and "Faults: JWKS", case by case, at the domain level; the
HTTP tests (``test_oidc.py``) replay the main ones end to end.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization

from app import tokens
from app.tokens import InvalidToken, KeysUnavailable, TokenValidator, TrustedIssuer
from tests.conftest import make_settings
from tests.idp import AUDIENCE, RP_CLIENT_ID, IdentityProviderServer


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp() -> Iterator[IdentityProviderServer]:
    with IdentityProviderServer() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def validator(tmp_path, clock) -> TokenValidator:
    return TokenValidator(make_settings(tmp_path), timeout=(0.5, 0.5), clock=clock)


@pytest.fixture
def issuer(idp) -> TrustedIssuer:
    return TrustedIssuer(
        issuer=idp.issuer,
        jwks_uri=idp.jwks_uri,
        audiences=(AUDIENCE,),
        algorithms=("RS256", "ES256"),
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict, claims: dict, signature: bytes = b"") -> str:
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)]
    )


def refused(validator, issuer, token, reason: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        validator.access_token(issuer, token)
    assert reason in caught.value.message


# --- what is accepted ----------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_good_access_token_is_accepted(validator, issuer, idp, algorithm):
    token = idp.access_token(
        "00u1", sid="s-1", auth_time=int(time.time()) - 30, algorithm=algorithm
    )
    verified = validator.access_token(issuer, token)
    assert verified.subject == "00u1"
    assert verified.session_id == "s-1"
    assert verified.session_key == "sid:s-1"
    assert verified.session_time == verified.auth_time


def test_the_subject_comes_from_the_configured_claim_never_from_email(validator, idp):
    issuer = TrustedIssuer(idp.issuer, idp.jwks_uri, (AUDIENCE,), ("RS256",), subject_claim="uid")
    token = idp.access_token("00u1", uid="00u-from-uid", email="boss@example.com")
    assert validator.access_token(issuer, token).subject == "00u-from-uid"
    refused(validator, issuer, idp.access_token("00u1"), "uid claim is missing")


def test_the_audience_may_be_a_list_with_one_of_the_tenants(validator, issuer, idp):
    token = idp.access_token(audience=["api://other", AUDIENCE])
    assert validator.access_token(issuer, token).subject == "00u1"


# --- algorithms and headers -----------------------------------------------------------------


def test_alg_none_is_refused(validator, issuer, idp):
    token = _unsigned({"alg": "none", "typ": "JWT"}, idp.claims("00u1", aud=AUDIENCE))
    refused(validator, issuer, token, "algorithm is not allowed")


def test_hs256_signed_with_the_idps_public_key_is_refused(validator, issuer, idp):
    """The key-confusion attack: the public key (PEM and JWK forms) used as an HMAC secret."""
    public = idp.keys["RS256"].private.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": idp.keys["RS256"].kid}
    claims = idp.claims("00u1", aud=AUDIENCE)
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    for secret in (pem, json.dumps(idp.keys["RS256"].public_jwk()).encode()):
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        refused(validator, issuer, f"{signing_input}.{_b64(signature)}", "algorithm")


def test_an_algorithm_the_tenant_did_not_pin_is_refused(validator, idp):
    rsa_only = TrustedIssuer(idp.issuer, idp.jwks_uri, (AUDIENCE,), ("RS256",))
    refused(validator, rsa_only, idp.access_token(algorithm="ES256"), "algorithm")


def test_an_unknown_crit_header_is_refused(validator, issuer, idp):
    token = idp.access_token(headers={"crit": ["exp-extension"], "exp-extension": True})
    refused(validator, issuer, token, "critical header")


def test_a_token_signed_by_another_key_is_refused(validator, issuer, idp):
    with IdentityProviderServer() as other:
        forged = other.sign(
            idp.claims("00u1", aud=AUDIENCE),
            headers={"typ": "at+jwt", "kid": idp.keys["RS256"].kid},
        )
    refused(validator, issuer, forged, "signature")


def test_garbage_is_refused(validator, issuer):
    for token in ("", "abc", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.", "x" * 20000):
        with pytest.raises(InvalidToken):
            validator.access_token(issuer, token)


# --- token kinds ------------------------------------------------------------------------------


def test_an_id_token_is_not_an_access_token(validator, issuer, idp):
    refused(validator, issuer, idp.id_token("00u1"), "audience")
    # even when its audience is the tenant's API, its nonce / at_hash give it away
    refused(validator, issuer, idp.id_token("00u1", audience=AUDIENCE), "ID token")
    refused(
        validator, issuer, idp.id_token("00u1", audience=AUDIENCE, nonce=None), "ID token"
    )  # at_hash alone


def test_a_refresh_token_is_not_an_access_token(validator, issuer, idp):
    refused(validator, issuer, idp.refresh_token("00u1"), "not an access token")


def test_a_logout_token_is_not_an_access_token(validator, issuer, idp):
    refused(validator, issuer, idp.logout_token("00u1", audience=AUDIENCE), "type")


@pytest.mark.parametrize("typ", ["id_token+jwt", "logout+jwt", "secevent+jwt", "dpop+jwt"])
def test_other_token_types_are_refused(validator, issuer, idp, typ):
    refused(validator, issuer, idp.access_token(headers={"typ": typ}), "type")


def test_plain_jwt_type_or_none_is_an_access_token(validator, issuer, idp):
    for headers in ({"typ": "JWT"}, {"typ": "application/at+jwt"}):
        assert validator.access_token(issuer, idp.access_token(headers=headers))
    claims = idp.claims("00u1", aud=AUDIENCE)
    assert validator.access_token(issuer, idp.sign(claims))  # no typ at all (Okta, Entra)


# --- iss, aud -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iss",
    [
        lambda i: i + "/",
        lambda i: i + "x",
        lambda i: i[:-1],
        lambda i: i.replace("http://", "https://"),
        lambda i: i.upper(),
        lambda i: " " + i,
    ],
    ids=["trailing-slash", "suffix", "prefix", "scheme", "case", "space"],
)
def test_the_issuer_must_match_exactly(validator, issuer, idp, iss):
    refused(validator, issuer, idp.access_token(iss=iss(idp.issuer)), "issuer")


def test_a_wrong_or_missing_audience_is_refused(validator, issuer, idp):
    refused(validator, issuer, idp.access_token(audience="api://other"), "audience")
    refused(validator, issuer, idp.access_token(audience=None), "audience")
    refused(validator, issuer, idp.access_token(audience=[]), "audience")
    refused(validator, issuer, idp.access_token(audience=AUDIENCE + "/"), "audience")


# --- time -----------------------------------------------------------------------------------


def test_expiry_and_not_before_have_a_small_leeway(validator, issuer, idp):
    now = int(time.time())
    assert validator.access_token(issuer, idp.access_token(exp=now - 30))
    refused(validator, issuer, idp.access_token(exp=now - 120), "expired")
    assert validator.access_token(issuer, idp.access_token(nbf=now + 30))
    refused(validator, issuer, idp.access_token(nbf=now + 120), "not valid yet")
    refused(validator, issuer, idp.access_token(iat=now + 600, nbf=None), "")


def test_a_token_without_expiry_is_refused(validator, issuer, idp):
    claims = idp.claims("00u1", aud=AUDIENCE)
    del claims["exp"]
    refused(validator, issuer, idp.sign(claims, headers={"typ": "at+jwt"}), "exp claim")


# --- the other kinds --------------------------------------------------------------------------


def test_an_id_token_hint_may_be_expired_and_for_any_audience(validator, issuer, idp):
    hint = idp.id_token("00u1", sid="s-1", audience="some-client", exp=int(time.time()) - 3600)
    verified = validator.id_token_hint(issuer, hint)
    assert (verified.subject, verified.session_id) == ("00u1", "s-1")
    wrong_issuer = idp.id_token("00u1", iss=idp.issuer + "/")
    with pytest.raises(InvalidToken):
        validator.id_token_hint(issuer, wrong_issuer)


def test_logout_tokens_are_validated_per_backchannel_logout_2_6(validator, issuer, idp):
    audiences = [AUDIENCE, RP_CLIENT_ID]
    ok = validator.logout_token(issuer, idp.logout_token("00u1", sid="s-1"), audiences)
    assert (ok.subject, ok.session_id) == ("00u1", "s-1")
    only_sid = validator.logout_token(issuer, idp.logout_token(None, sid="s-2"), audiences)
    assert (only_sid.subject, only_sid.session_id) == ("", "s-2")
    bad = {
        "nonce": idp.logout_token("00u1", nonce="n"),
        "no event": idp.logout_token("00u1", events={"urn:other": {}}),
        "neither": idp.logout_token(None),
        "audience": idp.logout_token("00u1", audience="someone-else"),
        "no jti": idp.logout_token("00u1", jti=""),
        "access token": idp.access_token("00u1"),
    }
    for name, token in bad.items():
        with pytest.raises(InvalidToken):
            validator.logout_token(issuer, token, audiences)
            pytest.fail(name)


# --- the JWKS endpoint ----------------------------------------------------------------------


def test_keys_are_cached_by_kid(validator, issuer, idp):
    for _ in range(3):
        validator.access_token(issuer, idp.access_token())
        validator.access_token(issuer, idp.access_token(algorithm="ES256"))
    assert idp.fetches == 1


def test_an_unknown_kid_refreshes_at_most_once_per_cool_down(validator, issuer, idp, clock):
    validator.access_token(issuer, idp.access_token())
    clock.now += tokens.REFRESH_COOLDOWN + 1
    idp.rotate("RS256")
    assert validator.access_token(issuer, idp.access_token())  # the new kid: one refetch
    assert idp.fetches == 2
    for _ in range(5):  # unknown kids hammer the endpoint: no refetch inside the cool-down
        refused(validator, issuer, idp.access_token(headers={"kid": "nope"}), "unknown key")
    assert idp.fetches == 2
    clock.now += tokens.REFRESH_COOLDOWN + 1
    refused(validator, issuer, idp.access_token(headers={"kid": "nope"}), "unknown key")
    refused(validator, issuer, idp.access_token(headers={"kid": "nope"}), "unknown key")
    assert idp.fetches == 3


@pytest.mark.parametrize("mode", ["down", "slow", "html", "garbage"])
def test_a_failing_endpoint_means_bounded_stale_use_of_the_last_good_keys(
    tmp_path, clock, issuer, idp, mode
):
    validator = TokenValidator(
        make_settings(tmp_path, jwks_max_stale=1800), timeout=(0.3, 0.3), clock=clock
    )
    validator.access_token(issuer, idp.access_token())
    idp.mode, idp.delay = mode, 1.0
    clock.now += tokens.KEYS_FRESH_FOR + 1  # the keys are due for a refresh, which fails
    started = time.monotonic()
    assert validator.access_token(issuer, idp.access_token())  # stale keys still good
    assert time.monotonic() - started < 5  # the slow endpoint was cut by the timeout
    clock.now += 1800  # past the stale bound
    with pytest.raises(KeysUnavailable):
        validator.access_token(issuer, idp.access_token())
    idp.mode = "ok"
    clock.now += tokens.REFRESH_COOLDOWN + 1
    assert validator.access_token(issuer, idp.access_token())  # recovers by itself


def test_no_keys_at_all_is_unavailable_not_accepted(validator, issuer, idp):
    idp.mode = "down"
    with pytest.raises(KeysUnavailable):
        validator.access_token(issuer, idp.access_token())


def test_encryption_keys_and_unusable_keys_are_ignored(validator, issuer, idp):
    rsa_key = idp.keys["RS256"]
    enc = rsa_key.public_jwk() | {"use": "enc", "kid": "enc-1"}
    wrong_ops = rsa_key.public_jwk() | {"key_ops": ["encrypt"], "kid": "ops-1"}
    symmetric = {"kty": "oct", "k": _b64(b"k" * 32), "kid": "oct-1", "alg": "HS256"}
    broken = {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "broken-1"}
    idp.extra_jwks = [enc, wrong_ops, symmetric, broken, "not a key"]
    claims = idp.claims("00u1", aud=AUDIENCE)
    for kid in ("enc-1", "ops-1", "broken-1"):
        token = idp.sign(claims, headers={"typ": "at+jwt", "kid": kid})  # right key, bad entry
        refused(validator, issuer, token, "unknown key")
    assert validator.access_token(issuer, idp.access_token())  # the good keys still work


def test_a_key_of_the_wrong_type_for_the_algorithm_is_not_used(validator, issuer, idp):
    claims = idp.claims("00u1", aud=AUDIENCE)
    # an ES256 token claiming the RSA key's kid
    token = idp.sign(claims, "ES256", headers={"typ": "at+jwt", "kid": idp.keys["RS256"].kid})
    refused(validator, issuer, token, "unknown key")


def test_private_jwks_urls_are_refused_unless_allowed(tmp_path, clock, issuer, idp):
    strict = TokenValidator(make_settings(tmp_path, allow_private_urls=False), clock=clock)
    with pytest.raises(KeysUnavailable):
        strict.access_token(issuer, idp.access_token())
    assert idp.fetches == 0
