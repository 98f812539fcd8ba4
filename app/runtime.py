"""What one app instance owns: its settings, database and keys (``app.extensions``)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from app.crypto import Keyring
from app.database import Database
from app.settings import Settings

EXTENSION = "idbridge"


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database
    keyring: Keyring


def init_app(flask_app: Flask, settings: Settings) -> Runtime:
    runtime = Runtime(
        settings=settings, db=Database(settings), keyring=Keyring(settings.secret_key)
    )
    flask_app.extensions[EXTENSION] = runtime
    return runtime


def of(flask_app: Flask) -> Runtime:
    return flask_app.extensions[EXTENSION]


def current() -> Runtime:
    """The runtime of the app handling this request."""
    return current_app.extensions[EXTENSION]
