"""User webhooks (CONTRACT §1) and the landing page of verification links.

``POST /t/{tenant}/webhooks/users/{get,delete,mark-email-verified,send-verification-email,
send-password-reset-email}``, signed per Standard Webhooks with one of the tenant's secrets;
``GET /t/{tenant}/verify-email?token=...``. Thin views: the domain is ``app.user_webhooks``,
``app.idempotency``, ``app.outbox`` and ``app.connectors``.
"""

from __future__ import annotations

from flask import Flask

from app import api as openapi
from app import limits


def init_app(flask_app: Flask) -> None:
    from webhooks import pages, views

    api = openapi.of(flask_app)
    api.register_blueprint(views.blp)
    limits.limit(flask_app, "webhooks", [views.blp])
    api.register_blueprint(pages.blp)
