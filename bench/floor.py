"""The floor: what no token exchange can avoid. ``GET /users/<pk>`` with a bearer access token
verifies the token like idbridge does (the same JWKS, PyJWT with RS256 pinned, ``iss`` /
``aud`` / ``exp`` / ``iat`` checked, the same leeway) and reads one row by primary key from
the same database, then answers a few of its columns as JSON.

Run as ``python -m bench.floor --port P --workers W --database-url URL --issuer ISS
--jwks-uri URI --audience AUD`` (under ``app.server.gunicorn_options``, 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jwt
from flask import Flask, abort, request
from sqlalchemy import create_engine, text

from app.tokens import LEEWAY
from bench.common import serve


def floor_app(database_url: str, issuer: str, jwks_uri: str, audience: str) -> Flask:
    flask_app = Flask(__name__)
    engine = create_engine(database_url, pool_size=4, pool_pre_ping=False)
    keys = jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=3600)
    row_query = text("SELECT subject, email, customer FROM users WHERE id = :pk")

    @flask_app.get("/users/<int:pk>")
    def user(pk: int) -> dict[str, Any]:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            abort(401)
        try:
            key = keys.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=["RS256"],
                audience=audience,
                issuer=issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError:
            abort(401)
        with engine.connect() as connection:
            row = connection.execute(row_query, {"pk": pk}).first()
        if row is None:
            abort(404)
        return {"sub": claims["sub"], "user": row.subject, "email": row.email}

    return flask_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--jwks-uri", required=True)
    parser.add_argument("--audience", required=True)
    args = parser.parse_args()
    factory: Callable[[], Flask] = lambda: floor_app(  # noqa: E731 - built in each worker
        args.database_url, args.issuer, args.jwks_uri, args.audience
    )
    serve(factory, args.port, args.workers)


if __name__ == "__main__":
    main()
