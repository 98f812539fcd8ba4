"""The SCIM peer: the scim2-server reference server (its ``InMemoryStorage``, its own WSGI
application, one bearer token) served by gunicorn with exactly ``app.server.gunicorn_options``.

Run as ``python -m bench.scim_peer --port P --workers W --users N`` with
``BENCH_SCIM_TOKEN`` in the environment (the one bearer token it accepts). Each worker
seeds its own memory at start with the same ``N`` users (``bench.scim_seed``), so a request
finds the same users whichever worker answers; a user created over HTTP lives in one worker.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from gunicorn.app.base import BaseApplication
from scim2_models import User
from scim2_server.memory import InMemoryStorage
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.utils import load_default_provider

from app.server import gunicorn_options
from bench import scim_seed


def peer_app(users: int, token: str) -> BearerTokenApplication:
    """The reference server with ``users`` users stored the fastest way its storage allows:
    assigning ``resources`` at once (it indexes each unique value once)."""
    provider = load_default_provider()
    provider.config.authentication_schemes = [BEARER_TOKEN_SCHEME]
    storage = InMemoryStorage()
    storage.resources = [User.model_validate(scim_seed.peer_user(index)) for index in range(users)]
    return BearerTokenApplication(storage, provider, bearer_tokens=[token])


class PeerServer(BaseApplication):
    def __init__(self, options: dict[str, Any], users: int, token: str) -> None:
        self.options = options
        self.users = users
        self.token = token
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> BearerTokenApplication:
        return peer_app(self.users, self.token)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scim_peer")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=0)
    args = parser.parse_args()
    options = gunicorn_options("127.0.0.1", args.port, args.workers)
    PeerServer(options, args.users, os.environ["BENCH_SCIM_TOKEN"]).run()


if __name__ == "__main__":
    main()
