"""Token exchange for operators: upstream mappings, signing keys and the audit log.

``/admin/v1/tenants/{slug}/integrations/{name}/mappings``: who a user is upstream, keyed by
the User id (``subject``); ``PUT`` creates or replaces one, ``POST`` imports many, all or
nothing. ``/admin/v1/tenants/{slug}/signing-keys``: the published keys, and rotation.
``/admin/v1/tenants/{slug}/audit``: read-only here (append-only everywhere): filters, newest
first, keyset pages.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from admin.common import admin_blueprint, documented, invalid
from app import audit, integrations, mappings, runtime, signing, tenants
from app.models import AuditEvent, SigningKey, UpstreamMapping

NO_NUL = validate.Regexp(r"^[^\x00]*$", error="must not contain NUL characters")

blp = admin_blueprint(
    "exchange", "Upstream identity mappings of integrations, and the token-exchange audit log."
)


class MappingListQuery(Schema):
    limit = fields.Integer(validate=validate.Range(1, 1000), load_default=100)
    after = fields.String(
        validate=[validate.Length(1, 255), NO_NUL],
        metadata={"description": "The previous page's `next`: mappings after this user id."},
    )


class MappingPut(Schema):
    upstream_subject = fields.String(
        required=True,
        validate=[validate.Length(1, 255), NO_NUL],
        metadata={"description": "The user's login name or subject in the upstream system."},
    )


class Mapping(Schema):
    subject = fields.String(metadata={"description": "The User id."})
    upstream_subject = fields.String()
    source = fields.String()


class MappingPage(Schema):
    items = fields.List(fields.Nested(Mapping))
    next = fields.String(allow_none=True)


class MappingImportRow(Schema):
    user_id = fields.String(required=True, validate=[validate.Length(max=255), NO_NUL])
    upstream_subject = fields.String(required=True, validate=[validate.Length(max=255), NO_NUL])


class MappingImport(Schema):
    mappings = fields.List(
        fields.Nested(MappingImportRow), required=True, validate=validate.Length(1, 10_000)
    )


class ImportResult(Schema):
    created = fields.Integer(required=True)
    updated = fields.Integer(required=True)
    unchanged = fields.Integer(required=True)


class SigningKeyView(Schema):
    kid = fields.String(required=True)
    algorithm = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    activates_at = fields.DateTime(required=True, metadata={"description": "Signs from then."})
    retires_at = fields.DateTime(
        allow_none=True, required=True, metadata={"description": "Unpublished from then."}
    )


def _key(row: SigningKey) -> dict[str, Any]:
    return {name: getattr(row, name) for name in SigningKeyView().fields}


@blp.route("/tenants/<slug:slug>/signing-keys")
class SigningKeys(MethodView):
    @blp.response(200, SigningKeyView(many=True))
    @documented(blp, 404)
    def get(self, slug: str) -> list[dict[str, Any]]:
        """List a tenant's published signing keys, newest first"""
        with runtime.current().db.read() as session:
            tenants.find(session, slug)
            return [_key(row) for row in signing.published(session)]

    @blp.response(201, SigningKeyView)
    @documented(blp, 404)
    def post(self, slug: str) -> dict[str, Any]:
        """Rotate: publish the next signing key

        The new key is published at once and signs from `activates_at` (an hour later, when
        every verifier has fetched it); the current key stays published until the last token
        it can sign has expired.
        """
        rt = runtime.current()
        with rt.db.transaction() as session:
            tenant = tenants.find(session, slug)
            return _key(signing.rotate(session, rt.keyring, tenant))


def _mapping(row: UpstreamMapping) -> dict[str, Any]:
    return {"subject": row.subject, "upstream_subject": row.upstream_subject, "source": row.source}


@blp.route("/tenants/<slug:slug>/integrations/<name:name>/mappings")
class MappingCollection(MethodView):
    @blp.arguments(MappingListQuery, location="query")
    @blp.response(200, MappingPage)
    @documented(blp, 404)
    def get(self, query: dict[str, Any], slug: str, name: str) -> dict[str, Any]:
        """List an integration's mappings

        Ordered by user id, `limit` at a time: pass a page's `next` as `after`.
        """
        with runtime.current().db.read() as session:
            tenants.find(session, slug)
            integration = integrations.find(session, name)
            rows = mappings.list_page(session, integration, query["limit"] + 1, query.get("after"))
            page = rows[: query["limit"]]
            return {
                "items": [_mapping(row) for row in page],
                "next": page[-1].subject if len(rows) > len(page) else None,
            }

    @blp.arguments(MappingImport)
    @blp.response(200, ImportResult)
    @documented(blp, 400, 404)
    def post(self, data: dict[str, Any], slug: str, name: str) -> dict[str, Any]:
        """Import mappings in bulk (all or nothing)

        One transaction: if any entry cannot be stored (empty, too long, a user id twice),
        the answer is 422 naming every such entry by its index, and nothing is imported.
        """
        with runtime.current().db.transaction() as session:
            tenants.find(session, slug)
            integration = integrations.find(session, name)
            rows = enumerate(data["mappings"])
            report = mappings.import_rows(session, integration, rows)
            if report.rejected:  # the abort rolls the transaction back
                invalid({"mappings": {index: [why] for index, why in report.rejected}})
            return {
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
            }


@blp.route("/tenants/<slug:slug>/integrations/<name:name>/mappings/<subject>")
class MappingItem(MethodView):
    @blp.response(200, Mapping)
    @documented(blp, 404)
    def get(self, slug: str, name: str, subject: str) -> dict[str, Any]:
        """Read a user's mapping"""
        with runtime.current().db.read() as session:
            tenants.find(session, slug)
            return _mapping(mappings.find(session, integrations.find(session, name), subject))

    @blp.arguments(MappingPut)
    @blp.response(200, Mapping, description="Replaced.")
    @blp.alt_response(201, schema=Mapping, description="Created.", success=True)
    @documented(blp, 400, 404)
    def put(self, data: dict[str, Any], slug: str, name: str, subject: str) -> Any:
        """Map a user to an upstream subject (create or replace)"""
        with runtime.current().db.transaction() as session:
            tenants.find(session, slug)
            row, created = mappings.put(
                session, integrations.find(session, name), subject, data["upstream_subject"]
            )
            return _mapping(row), 201 if created else 200

    @blp.response(204)
    @documented(blp, 404)
    def delete(self, slug: str, name: str, subject: str) -> None:
        """Remove a user's mapping"""
        with runtime.current().db.transaction() as session:
            tenants.find(session, slug)
            mappings.delete(
                session, mappings.find(session, integrations.find(session, name), subject)
            )


class AuditQuery(Schema):
    since = fields.AwareDateTime(metadata={"description": "Events at or after this time."})
    until = fields.AwareDateTime(metadata={"description": "Events before this time."})
    client = fields.String(validate=[validate.Length(1, 200), NO_NUL])
    user = fields.String(validate=[validate.Length(1, 255), NO_NUL])
    integration = fields.String(validate=[validate.Length(1, 100), NO_NUL])
    outcome = fields.String(validate=validate.OneOf(audit.OUTCOMES))
    limit = fields.Integer(validate=validate.Range(1, 500), load_default=100)
    before = fields.Integer(
        validate=validate.Range(1, 2**62),
        metadata={"description": "The previous page's `next`: events older than this one."},
    )


class AuditEventSchema(Schema):
    id = fields.Integer()
    at = fields.DateTime()
    action = fields.String()
    client_id = fields.String()
    actors = fields.List(fields.String())
    user = fields.String()
    integration = fields.String()
    audience = fields.String()
    scope = fields.String()
    outcome = fields.String()
    error_code = fields.String()
    reason = fields.String()
    request_id = fields.String()


class AuditPage(Schema):
    items = fields.List(fields.Nested(AuditEventSchema))
    next = fields.Integer(allow_none=True)


def _event(row: AuditEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at,
        "action": row.action,
        "client_id": row.client_id,
        "actors": list(row.actors or []),
        "user": row.subject,
        "integration": row.integration,
        "audience": row.audience,
        "scope": row.scope,
        "outcome": row.outcome,
        "error_code": row.error_code,
        "reason": row.reason,
        "request_id": row.request_id,
    }


@blp.route("/tenants/<slug:slug>/audit")
class AuditLog(MethodView):
    @blp.arguments(AuditQuery, location="query")
    @blp.response(200, AuditPage)
    @documented(blp, 404)
    def get(self, query: dict[str, Any], slug: str) -> dict[str, Any]:
        """Query the audit log

        Token exchanges and mapping queries, newest first, `limit` at a time: pass a page's
        `next` as `before`. Filters: `since`, `until`, `client`, `user`, `integration`,
        `outcome` (success or failure).
        """
        with runtime.current().db.read() as session:
            tenants.find(session, slug)
            rows = audit.query(
                session,
                limit=query["limit"] + 1,
                before=query.get("before"),
                since=query.get("since"),
                until=query.get("until"),
                client_id=query.get("client"),
                subject=query.get("user"),
                integration=query.get("integration"),
                outcome=query.get("outcome"),
            )
            page = rows[: query["limit"]]
            return {
                "items": [_event(row) for row in page],
                "next": page[-1].id if len(rows) > len(page) else None,
            }
