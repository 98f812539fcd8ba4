"""The HTTP API's OpenAPI surface: one flask-smorest ``Api`` per app, and ``openapi.yaml``.

``init_app`` builds the app's ``Api`` (never a module-level one: two apps in one process each
document and serve their own routes) and keeps it in ``app.extensions``; every protocol package
registers its smorest blueprints on it with ``of(app).register_blueprint(...)``. The document
is served at ``/openapi.json`` and rendered for people at ``/docs`` (ReDoc).

``openapi.yaml`` at the repository root is this document, committed so that a change to the
public contract shows up in review. A test fails when it drifts; regenerate it with::

    .venv/bin/python -m app.api -o openapi.yaml

(``python -m app.api --check openapi.yaml`` only compares, exiting 1 on drift.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from apispec import BasePlugin
from flask import Flask
from flask_smorest import Api
from werkzeug.routing import BaseConverter

from app.schemas import SLUG

EXTENSION = "idbridge.api"
OPENAPI_VERSION = "3.1.0"
ADMIN_TOKEN_SCHEME = "adminToken"
REDOC_URL = "https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"
DESCRIPTION = (
    "idbridge: a federation user-webhook gateway and identity bridge. This document covers "
    "the HTTP operations a caller depends on; the wire contract is CONTRACT.md."
)


class ResponsesInOrder(BasePlugin):
    """List each operation's responses by status code, ``default`` last."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"] = dict(
                    sorted(operation["responses"].items(), key=lambda item: _status_key(item[0]))
                )


def _status_key(status: Any) -> tuple[int, str]:
    return (1, "") if str(status) == "default" else (0, str(status))


def register_converter(
    flask_app: Flask, api: Api, name: str, pattern: str, example: str | None = None
) -> None:
    """Route ``<name:...>`` URL parts matching ``pattern`` only, and document the pattern.

    A path value that does not match never reaches a view: it answers 404 like any unknown
    URL, so views only ever see well-formed identifiers.
    """
    converter = type(
        f"{name.title().replace('_', '')}Converter",
        (BaseConverter,),
        {"regex": pattern.strip("^$")},
    )
    schema = {"type": "string", "pattern": pattern} | ({"example": example} if example else {})
    flask_app.url_map.converters[name] = converter
    api.register_converter(converter, lambda _converter: dict(schema))


def package_version() -> str:
    try:
        return metadata.version("idbridge")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "0.1.0"


def init_app(flask_app: Flask) -> Api:
    """Create the app's ``Api``; call before any package registers a smorest blueprint."""
    flask_app.config.update(
        API_TITLE="idbridge",
        API_VERSION=package_version(),
        OPENAPI_VERSION=OPENAPI_VERSION,
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_REDOC_PATH="/docs",
        OPENAPI_REDOC_URL=REDOC_URL,
    )
    api = Api(
        flask_app,
        spec_kwargs={"info": {"description": DESCRIPTION}, "extra_plugins": [ResponsesInOrder()]},
    )
    # idbridge pages with keyset `after` parameters, never with flask-smorest's page numbers:
    # drop the pagination schema it registers up front, so the document shows only what exists.
    api.spec.components.schemas.pop("PaginationMetadata", None)
    api.spec.components.security_scheme(
        ADMIN_TOKEN_SCHEME,
        {
            "type": "http",
            "scheme": "bearer",
            "description": "The operator token, `IDBRIDGE_ADMIN_TOKEN`.",
        },
    )
    register_converter(flask_app, api, "slug", SLUG, example="acme")
    flask_app.extensions[EXTENSION] = api
    return api


def of(flask_app: Flask) -> Api:
    return flask_app.extensions[EXTENSION]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (descriptions from docstrings) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
TOP_LEVEL_ORDER = ("openapi", "info", "tags", "paths", "components")


def to_yaml(flask_app: Flask) -> str:
    """The app's OpenAPI document as YAML: registration order, so the same code gives the
    same bytes."""
    document = of(flask_app).spec.to_dict()
    ordered = {key: document[key] for key in TOP_LEVEL_ORDER if key in document}
    ordered |= {key: value for key, value in document.items() if key not in ordered}
    return yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def spec_app() -> Flask:
    """An app built only to read its API document (no database is ever opened)."""
    from app import create_app
    from app.settings import Settings

    instance = str(Path(tempfile.gettempdir()) / "idbridge-openapi")  # never written to
    settings = Settings.load(
        environ={},
        overrides={
            "instance_path": instance,
            "database_url": "sqlite:///:memory:",
            "secret_key": "openapi-generation-only-" + "0" * 16,
        },
    )
    return create_app(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.api", description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", help="write the document here (default: stdout)")
    parser.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs from the document")
    args = parser.parse_args(argv)
    document = to_yaml(spec_app())
    if args.check:
        if Path(args.check).read_text() != document:
            print(f"{args.check} is out of date: run `python -m app.api -o {args.check}`")
            return 1
        return 0
    if args.output:
        Path(args.output).write_text(document)
    else:
        sys.stdout.write(document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
