"""Secrets at rest: sealed values open only with the same key and context; hashes are keyed."""

from __future__ import annotations

import pytest

from app.crypto import Keyring, SecretUnreadable, generate_token, generate_webhook_secret

A = Keyring("a" * 32)
B = Keyring("b" * 32)


def test_sealed_values_open_with_the_same_key_and_context():
    sealed = A.seal("whsec_example", "tenant:1:webhook-secret")
    assert "whsec_example" not in sealed
    assert A.open(sealed, "tenant:1:webhook-secret") == "whsec_example"
    assert A.seal("same", "c") != A.seal("same", "c")  # fresh nonce each time


@pytest.mark.parametrize(
    ("keyring", "context"), [(B, "tenant:1:webhook-secret"), (A, "tenant:2:webhook-secret")]
)
def test_a_sealed_value_does_not_open_elsewhere(keyring, context):
    sealed = A.seal("secret", "tenant:1:webhook-secret")
    with pytest.raises(SecretUnreadable):
        keyring.open(sealed, context)


def test_a_tampered_value_does_not_open():
    sealed = A.seal("secret", "ctx")
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SecretUnreadable):
        A.open(tampered, "ctx")


def test_token_hashes_are_keyed_and_compared():
    token = generate_token("scim_")
    assert A.hash_token(token) != B.hash_token(token)
    assert A.token_matches(token, A.hash_token(token))
    assert not A.token_matches(token + "x", A.hash_token(token))


def test_generated_credentials_are_high_entropy_and_distinct():
    tokens = {generate_token("cs_") for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) >= 40 for t in tokens)
    assert generate_webhook_secret().startswith("whsec_")
