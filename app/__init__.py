"""idbridge: a federation user-webhook gateway and identity bridge.

``create_app`` builds one independent application from small ``init_app`` steps. Nothing here
is module-level state: two apps (say, idbridge and a second idbridge acting as its upstream
authorization server) live side by side in one process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from app.settings import Settings


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """Build the service; ``config`` is a ``Settings`` or overrides of the environment's."""
    settings = config if isinstance(config, Settings) else Settings.load(overrides=config)
    flask_app = Flask(__name__, instance_path=settings.instance_path)
    flask_app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024

    from admin import init_app as init_admin
    from app import api, forwarded, limits, logs, observability, runtime, shared
    from oauth import init_app as init_oauth
    from scim import init_app as init_scim
    from webhooks import init_app as init_webhooks

    logs.init_app(flask_app, settings)
    forwarded.init_app(flask_app, settings)
    runtime.init_app(flask_app, settings)
    shared.init_app(flask_app)
    limits.init_app(flask_app)
    observability.init_app(flask_app)
    api.init_app(flask_app)
    init_admin(flask_app)
    init_oauth(flask_app)
    init_webhooks(flask_app)
    init_scim(flask_app)
    return flask_app
