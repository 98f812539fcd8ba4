"""Rate limits (flask-limiter) at the token endpoint, the user webhooks and SCIM.

Two limits per surface, both counted per tenant: one for each caller
(``IDBRIDGE_RATE_LIMIT_CLIENT``: the OAuth ``client_id``, a keyed hash of a SCIM bearer token,
else the peer address) and one for all callers together (``IDBRIDGE_RATE_LIMIT_TENANT``), so
one noisy client or tenant cannot starve the others. Counters live in Redis when
``IDBRIDGE_REDIS_URL`` is set (one count across instances), else in process memory.

A refused request answers 429 with ``Retry-After`` (RFC 9110 §10.2.3, RFC 6585 §4), rendered in
the caller's protocol by its package's error handler. Rate limits guard capacity, not access:
when Redis fails they fall back to per-process counters (flask-limiter's in-memory fallback)
rather than refusing every request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Blueprint, Flask, request
from flask_limiter import Limiter

from app import runtime
from app.runtime import Runtime

EXTENSION = "idbridge.limits"
KEY_PREFIX = "idbridge:limits"


def init_app(flask_app: Flask) -> Limiter:
    rt = runtime.of(flask_app)
    settings = rt.settings
    options: dict[str, str | int] = {}
    if settings.redis_url:
        timeout = settings.redis_timeout
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}  # type: ignore[dict-item]
    limiter = Limiter(
        _tenant,
        app=flask_app,
        storage_uri=settings.redis_url or "memory://",
        storage_options=options,
        key_prefix=KEY_PREFIX,
        headers_enabled=True,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    flask_app.extensions[EXTENSION] = limiter
    return limiter


def limit(flask_app: Flask, surface: str, blueprints: Iterable[Blueprint]) -> None:
    """Apply both limits to every request of ``blueprints``, counted together as ``surface``."""
    limiter: Limiter = flask_app.extensions[EXTENSION]
    rt = runtime.of(flask_app)
    for blueprint in blueprints:
        for value, key in (
            (rt.settings.rate_limit_client, _caller(rt)),
            (rt.settings.rate_limit_tenant, _tenant),
        ):
            if value:
                limiter.shared_limit(value, surface, key_func=key)(blueprint)


def _tenant() -> str:
    args = request.view_args or {}
    return str(args.get("slug") or args.get("tenant") or "")


def _caller(rt: Runtime) -> Callable[[], str]:
    def key() -> str:
        auth = request.authorization
        if auth is not None and auth.type == "basic" and auth.username:
            caller = f"client:{auth.username}"
        elif auth is not None and auth.type == "bearer" and auth.token:
            caller = f"bearer:{rt.keyring.hash_token(auth.token)}"
        elif request.mimetype == "application/x-www-form-urlencoded" and request.form.get(
            "client_id"
        ):
            caller = f"client:{request.form['client_id']}"
        else:
            caller = f"addr:{request.remote_addr}"
        return f"{_tenant()}:{caller[:300]}"

    return key
