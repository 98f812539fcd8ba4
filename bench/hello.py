"""The baseline: a bare Flask app answering ``{"ok": true}``, served by gunicorn with exactly
``app.server.gunicorn_options`` (the configuration ``idbridge serve`` uses).

Run as ``python -m bench.hello --port P --workers W`` (bound to 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from app.server import gunicorn_options


def hello_app() -> Flask:
    flask_app = Flask(__name__)

    @flask_app.get("/")
    def hello() -> dict[str, bool]:
        return {"ok": True}

    return flask_app


class HelloServer(BaseApplication):
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return hello_app()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hello")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    HelloServer(gunicorn_options("127.0.0.1", args.port, args.workers)).run()


if __name__ == "__main__":
    main()
