"""Standard Webhooks signature verification over the raw body bytes (CONTRACT §1).

``webhook-signature`` carries one or more space-separated ``v<n>,<base64>`` entries: during
secret rotation the sender signs with several secrets, and idbridge accepts the request when
any ``v1`` entry verifies under any of the tenant's active secrets. Entries of other versions
are ignored, never an error. The ``standardwebhooks`` library does the HMAC-SHA256 over
``{id}.{timestamp}.{body}``, the constant-time comparison and the 5-minute timestamp
tolerance; this module only feeds it the exact bytes received and turns every way of failing
into the same ``Unauthorized``.
"""

from __future__ import annotations

from collections.abc import Mapping

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from webhooks.wire import Unauthorized

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
REFUSED = "the webhook signature is missing, stale or wrong"


def verify(secrets: list[str], body: bytes, headers: Mapping[str, str]) -> str:
    """Return the ``webhook-id`` of a request signed with one of ``secrets``, else raise."""
    webhook_id, stamp, signature = (headers.get(name, "") for name in HEADERS)
    signed_v1 = [entry for entry in signature.split() if entry.startswith("v1,")]
    if not (webhook_id and stamp and signed_v1 and secrets):
        raise Unauthorized(REFUSED)
    try:
        text = body.decode("utf-8")  # a conforming sender signs text; anything else fails
    except UnicodeDecodeError:
        raise Unauthorized(REFUSED) from None
    presented = {
        "webhook-id": webhook_id,
        "webhook-timestamp": stamp,
        "webhook-signature": " ".join(signed_v1),
    }
    for secret in secrets:
        try:
            Webhook(secret).verify(text, presented, json_parse=False)
        except (WebhookVerificationError, ValueError):  # binascii.Error is a ValueError
            continue
        return webhook_id
    raise Unauthorized(REFUSED)
