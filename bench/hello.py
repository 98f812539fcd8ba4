"""The baseline: a bare Flask app answering ``{"ok": true}``, served by gunicorn with exactly
``app.server.gunicorn_options`` (the configuration ``idbridge serve`` uses).

Run as ``python -m bench.hello --port P --workers W`` (bound to 127.0.0.1 only).
"""

from __future__ import annotations

import argparse

from flask import Flask

from bench.common import serve


def hello_app() -> Flask:
    flask_app = Flask(__name__)

    @flask_app.get("/")
    def hello() -> dict[str, bool]:
        return {"ok": True}

    return flask_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hello")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    serve(hello_app, args.port, args.workers)


if __name__ == "__main__":
    main()
