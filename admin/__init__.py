"""Operators' API ``/admin/v1`` (flask-smorest): placeholder until routes land."""

from flask import Flask


def init_app(flask_app: Flask) -> None:
    return None
