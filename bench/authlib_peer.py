"""The peer: an Authlib authorization server's token endpoint, the OAuth 2.0 server a team
would otherwise glue together itself. Client credentials grant (RFC 6749 §4.4) with
``client_secret_basic`` (§2.3.1), clients and issued tokens in SQLAlchemy tables of the same
database kind idbridge uses (Authlib's own ``sqla_oauth2`` mixins); every token it issues is
written to its table, as Authlib's save-token function does.

``seed`` creates the tables and the client; run the server as ``python -m bench.authlib_peer
--port P --workers W --database-url URL`` (under ``app.server.gunicorn_options``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from flask import Flask, Response
from sqlalchemy import Engine, Integer, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, scoped_session, sessionmaker

from bench.common import serve

PATH = "/oauth/token"


class Base(DeclarativeBase):
    pass


def _models() -> tuple[type, type]:
    from authlib.integrations.sqla_oauth2 import OAuth2ClientMixin, OAuth2TokenMixin

    class PeerClient(Base, OAuth2ClientMixin):
        __tablename__ = "authlib_peer_clients"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)

    class PeerToken(Base, OAuth2TokenMixin):
        __tablename__ = "authlib_peer_tokens"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        user_id: Mapped[int | None] = mapped_column(Integer)  # none: client credentials

    return PeerClient, PeerToken


PeerClient, PeerToken = _models()


def _engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        # WAL like idbridge's SQLite store, so readers and the writer do not block each other.
        engine = create_engine(database_url, connect_args={"timeout": 30})
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        return engine
    return create_engine(database_url, pool_size=4)


def seed(database_url: str, client_id: str, secret: str, scope: str) -> None:
    engine = _engine(database_url)
    Base.metadata.create_all(engine)
    with sessionmaker(engine)() as session, session.begin():
        client = PeerClient(client_id=client_id, client_secret=secret)
        client.set_client_metadata(
            {
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": scope,
            }
        )
        session.add(client)
    engine.dispose()


def peer_app(database_url: str) -> Flask:
    from authlib.integrations.flask_oauth2 import AuthorizationServer
    from authlib.integrations.sqla_oauth2 import create_query_client_func, create_save_token_func
    from authlib.oauth2.rfc6749 import grants

    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain HTTP on 127.0.0.1 only
    flask_app = Flask(__name__)
    session = scoped_session(sessionmaker(_engine(database_url)))
    server = AuthorizationServer(
        flask_app,
        query_client=create_query_client_func(session, PeerClient),
        save_token=create_save_token_func(session, PeerToken),
    )
    server.register_grant(grants.ClientCredentialsGrant)

    @flask_app.post(PATH)
    def token() -> Response:
        return server.create_token_response()

    @flask_app.teardown_appcontext
    def release(_exc: BaseException | None) -> None:
        session.remove()

    return flask_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.authlib_peer")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    factory: Callable[[], Flask] = lambda: peer_app(args.database_url)  # noqa: E731
    serve(factory, args.port, args.workers)


if __name__ == "__main__":
    main()
