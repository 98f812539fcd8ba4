"""The OAuth / OpenID Connect side of idbridge (CONTRACT §2-3).

Holds token exchange, discovery, JWKS, revocation, introspection and the mapping query as they
land: userinfo, RP-initiated and API logout, and back-channel logout (``oauth.oidc``); token
exchange, the mapping query, JWKS and discovery (``oauth.exchange``).
Views are thin: they read the request (``oauth.bearer``), call one function of ``app.oidc`` in
one transaction, and render the result or the domain error in the caller's protocol.
"""

from __future__ import annotations

from flask import Flask

from app import api as openapi
from app import limits, runtime, tokens, upstream_guard


def init_app(flask_app: Flask) -> None:
    """The app's token validator, then the blueprints (``app.api.init_app`` runs first)."""
    from oauth import exchange, oidc

    tokens.init_app(flask_app, runtime.of(flask_app).settings)
    upstream_guard.init_app(flask_app)
    api = openapi.of(flask_app)
    oidc.document(api)
    exchange.document(api)
    api.register_blueprint(oidc.blp)
    api.register_blueprint(exchange.blp)
    limits.limit(flask_app, "oauth", [exchange.blp])
