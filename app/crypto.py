"""Secrets at rest: encryption for secrets idbridge must use, keyed hashes for ones it compares.

Two keys are derived from ``IDBRIDGE_SECRET_KEY`` with HKDF-SHA256 (RFC 5869), one per purpose:

- secrets idbridge must be able to use again (webhook HMAC keys, upstream client secrets,
  connector credentials, signing keys) are sealed with AES-256-GCM; the associated data binds a
  ciphertext to its tenant and purpose, so a sealed value copied into another row or tenant no
  longer opens;
- tokens idbridge generates and only ever compares (SCIM tokens, client secrets) are
  high-entropy, so a keyed fast hash (HMAC-SHA256) is the right storage: no password hash on a
  hot path, and a leaked table is useless without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEALED_PREFIX = "v1."
NONCE_BYTES = 12


class SecretUnreadable(Exception):
    """A sealed value does not open with this deployment's key (wrong key, tampered, moved)."""


def _derive(secret_key: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"idbridge", info=purpose).derive(
        secret_key.encode()
    )


class Keyring:
    """The deployment's derived keys; one per app, built from its settings."""

    def __init__(self, secret_key: str) -> None:
        self._aead = AESGCM(_derive(secret_key, b"seal secrets v1"))
        self._hash_key = _derive(secret_key, b"hash tokens v1")

    def seal(self, plaintext: str, context: str) -> str:
        """Encrypt ``plaintext``; ``context`` (tenant and purpose) must match to open it."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, context: str) -> str:
        if not sealed.startswith(SEALED_PREFIX):
            raise SecretUnreadable("unknown sealed format")
        raw = base64.urlsafe_b64decode(sealed[len(SEALED_PREFIX) :])
        try:
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise SecretUnreadable("sealed value does not open with this key") from None
        return plain.decode()

    def hash_token(self, token: str | bytes) -> str:
        """Keyed HMAC-SHA256 of a generated token (or of exact bytes, e.g. a webhook body),
        hex; equal inputs give equal hashes."""
        data = token.encode() if isinstance(token, str) else token
        return hmac.new(self._hash_key, data, hashlib.sha256).hexdigest()

    def token_matches(self, token: str, stored_hash: str) -> bool:
        """Constant-time comparison of a presented token with a stored hash."""
        return hmac.compare_digest(self.hash_token(token), stored_hash)


def constant_time_equals(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode(), right.encode())


def generate_token(prefix: str, nbytes: int = 32) -> str:
    """A high-entropy token with a recognisable prefix (``scim_``, ``cs_``): 256 bits."""
    return prefix + secrets.token_urlsafe(nbytes)


def generate_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` then base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def public_id(prefix: str) -> str:
    """A non-secret identifier for a stored credential, safe to show and log."""
    return prefix + secrets.token_hex(8)
