"""The OAuth / OpenID Connect side of idbridge (CONTRACT §2-3).

Holds token exchange, discovery, JWKS, revocation, introspection and the mapping query as they
land; today: userinfo, RP-initiated and API logout, and back-channel logout (``oauth.oidc``).
Views are thin: they read the request (``oauth.bearer``), call one function of ``app.oidc`` in
one transaction, and render the result or the domain error in the caller's protocol.
"""

from __future__ import annotations

from flask import Flask

from app import api as openapi
from app import runtime, tokens


def init_app(flask_app: Flask) -> None:
    """The app's token validator, then the blueprints (``app.api.init_app`` runs first)."""
    from oauth import oidc

    tokens.init_app(flask_app, runtime.of(flask_app).settings)
    api = openapi.of(flask_app)
    oidc.document(api)
    api.register_blueprint(oidc.blp)
