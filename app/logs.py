"""Structured JSON logs: one object a line, the request id on every line of a request.

The request id comes from a well-formed incoming ``X-Request-Id`` or is made here, and is
echoed in the response header. Nothing logs request bodies, headers or query strings; as a
second line of defence every message passes a redaction filter that masks anything shaped
like a credential idbridge knows (``whsec_``, ``scim_``, ``cs_`` tokens, bearer values, JWTs).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from flask import Flask, Response, g, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

from app.errors import DomainError, StoreUnavailable
from app.settings import Settings

REQUEST_ID_HEADER = "X-Request-Id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_CREDENTIAL = re.compile(
    r"(\b(?:whsec_[A-Za-z0-9+/=]+|scim_[\w-]+|cs_[\w-]+)"
    r"|(?i:bearer|basic)\s+[\w.~+/=-]+|eyJ[\w-]+\.[\w-]+\.[\w-]*)"
)
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
access_log = logging.getLogger("idbridge.access")


def redact(text: str) -> str:
    return _CREDENTIAL.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "pid": record.process,  # which worker of ``idbridge serve`` wrote it
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context() and "request_id" in g:
            record.request_id = g.request_id
        return True


def configure(level: str, *logger_names: str) -> None:
    """Send the named loggers to stderr as JSON (idempotent: one handler per logger)."""
    for name in ("idbridge", "gunicorn.error", *logger_names):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False
        # gunicorn's own plain-text console handler would print every line a second time
        logger.handlers = [
            h
            for h in logger.handlers
            if getattr(h, "idbridge", False)
            or not isinstance(h, logging.StreamHandler)
            or h.stream not in (sys.stderr, sys.stdout)
        ]
        if not any(getattr(h, "idbridge", False) for h in logger.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.idbridge = True  # type: ignore[attr-defined]
            handler.setFormatter(JsonFormatter())
            handler.addFilter(RequestIdFilter())
            logger.addHandler(handler)


def init_app(flask_app: Flask, settings: Settings) -> None:
    configure(settings.log_level, flask_app.logger.name)
    flask_app.before_request(_start)
    flask_app.after_request(_finish)
    flask_app.register_error_handler(Exception, _unexpected)


def _unexpected(exc: Exception) -> Response | HTTPException:
    """Errors no protocol package rendered: domain errors as ``{code, message}``, anything
    else logged with its request id and answered 500 without detail."""
    if isinstance(exc, HTTPException):
        return exc
    if isinstance(exc, DomainError):
        response = jsonify(code=exc.code, message=exc.message)
        response.status_code = exc.status
        if isinstance(exc, StoreUnavailable):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    logging.getLogger("idbridge.app").error("unhandled error", exc_info=exc)
    response = jsonify(
        code="internal_error",
        message=f"unexpected error; quote request id {g.get('request_id', '-')} when reporting it",
    )
    response.status_code = 500
    return response


def _start() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers[REQUEST_ID_HEADER] = request_id
    access_log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "path": request.path,  # never the query string: it may carry a token
            "client": request.remote_addr,  # the proxy's peer only if trusted (app.forwarded)
            "status": response.status_code,
            "duration_ms": round(
                (time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2
            ),
            "endpoint": request.endpoint or "unmatched",
        },
    )
    return response
