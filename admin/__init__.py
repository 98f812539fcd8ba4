"""Operators' API ``/admin/v1`` (flask-smorest): tenants, their clients, integrations, grants,
webhook secrets and SCIM tokens.

Every route needs ``Authorization: Bearer <IDBRIDGE_ADMIN_TOKEN>``. Views are thin: parse with
the schema, open one transaction, find the tenant (which scopes the session to it), call one
function of ``app/``, render. Domain errors become flask-smorest's error shape in
``admin.common``; the wire forms live in ``admin.schemas``.
"""

from __future__ import annotations

from flask import Flask

from app import api as openapi
from app import schemas as rules


def init_app(flask_app: Flask) -> None:
    """Register the admin blueprints on the app's ``Api`` (``app.api.init_app`` runs first)."""
    from admin import (
        clients,
        common,
        credentials,
        exchange,
        grants,
        integrations,
        schemas,
        tenants,
    )
    from admin import users as user_routes

    api = openapi.of(flask_app)
    for name, pattern, example in (
        ("client_id", rules.CLIENT_ID, "broker"),
        ("name", rules.NAME, "snowflake-prod"),
        ("webhook_secret_id", schemas.WEBHOOK_SECRET_ID, "whk_0123456789abcdef"),
        ("scim_token_id", schemas.SCIM_TOKEN_ID, "sct_0123456789abcdef"),
    ):
        openapi.register_converter(flask_app, api, name, pattern, example)
    for name, response in common.error_responses(api).items():
        api.spec.components.response(name, response)
    for module_blueprint in (
        tenants.blp,
        clients.blp,
        integrations.blp,
        grants.blp,
        credentials.webhook_blp,
        credentials.scim_blp,
        user_routes.blp,
        exchange.blp,
    ):
        api.register_blueprint(module_blueprint)
