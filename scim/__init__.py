"""SCIM 2.0 service provider at ``/t/{tenant}/scim/v2`` (RFC 7643, RFC 7644; CONTRACT §4).

Identity providers push users and groups here with one of the tenant's SCIM bearer tokens.
Views are thin: each documents one operation and hands the request to ``dispatch``, which
authenticates the token, opens one transaction scoped to the tenant, lets scim2-server's
handler run the protocol over ``scim.storage.SqlStorage``, and renders the ``ScimResponse``.
Every error, including Flask's own and store faults, answers in RFC 7644 §3.12 form.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint as FlaskBlueprint
from flask import Flask, Response
from flask.views import MethodView
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException

from app import api as openapi
from app import limits

PREFIX = "/t/<slug:tenant>/scim/v2"
SCHEME = "scimToken"
SCIM_MEDIA_TYPE = "application/scim+json"

blp = Blueprint(
    "scim",
    __name__,
    url_prefix=PREFIX,
    description="SCIM 2.0 provisioning (RFC 7643/7644), pushed by the tenant's identity "
    "provider with one of its SCIM tokens. Bodies are `application/scim+json`.",
)


def init_app(flask_app: Flask) -> None:
    """Register the documented SCIM blueprint on the app's ``Api``, and the fallback."""
    api = openapi.of(flask_app)
    api.spec.components.security_scheme(
        SCHEME,
        {"type": "http", "scheme": "bearer", "description": "A SCIM token of the tenant."},
    )
    api.spec.components.schema(
        "ScimObject",
        {"type": "object", "description": "A SCIM resource, list, or message (RFC 7644)."},
    )
    api.spec.components.schema(
        "ScimError",
        {
            "type": "object",
            "required": ["schemas", "status"],
            "properties": {
                "schemas": {"type": "array", "items": {"type": "string"}},
                "status": {"type": "string"},
                "scimType": {"type": "string"},
                "detail": {"type": "string"},
            },
        },
    )
    api.register_blueprint(blp)
    flask_app.register_blueprint(fallback)
    limits.limit(flask_app, "scim", [blp, fallback])


# Any other path under the SCIM root answers in SCIM form too (RFC 7644 §3.12: 404 with a
# SCIM error); not documented, since it is no operation.
fallback = FlaskBlueprint("scim-fallback", __name__, url_prefix=PREFIX)
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@fallback.route("/", defaults={"rest": ""}, methods=ALL_METHODS)
@fallback.route("/<path:rest>", methods=ALL_METHODS)
def _elsewhere(tenant: str, rest: str) -> Response:
    return dispatch(tenant, f"/{rest}")


# --- the one dispatch -------------------------------------------------------------------


def dispatch(tenant: str, path: str) -> Response:
    """Serve one SCIM request (``scim.handling``, imported on first use: scim2-models takes
    a good second to import, which a worker should not pay before it answers probes)."""
    from scim import handling

    return handling.dispatch(tenant, path)


@blp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    """Flask's own errors under the SCIM prefix (too large a body, ...) in SCIM form."""
    from scim import handling

    return handling.render(handling.error(exc.code or 500, exc.description or exc.name))


fallback.register_error_handler(HTTPException, _http_error)


# --- documentation: one view per operation ----------------------------------------------

ERRORS = {
    400: "Bad request: `invalidFilter`, `invalidSyntax`, `invalidValue`, `mutability`, ...",
    401: "No SCIM token, or not one of this tenant's.",
    404: "No such resource (or tenant).",
    409: "`uniqueness`: userName, the User id, customer or email belongs to another.",
    412: "`If-Match` does not match the resource's current ETag.",
    413: "Bulk above `maxOperations` or `maxPayloadSize`.",
    415: "The body is not JSON.",
    429: "Past the tenant's or the caller's rate limit; retry after `Retry-After` seconds.",
    501: "Not supported (sorting).",
    503: "The store cannot answer now; retry after `Retry-After` seconds.",
}


def documented(*statuses: int, auth: bool = True) -> Any:
    def decorator(view: Any) -> Any:
        for status in sorted(
            {401, 404, 429, 503, *statuses} if auth else {404, 429, 503, *statuses}, reverse=True
        ):
            view = blp.alt_response(
                status,
                description=ERRORS.get(status, "Error"),
                schema="ScimError",
                content_type=SCIM_MEDIA_TYPE,
            )(view)
        # A path that matches no route (a malformed tenant slug) gets Flask's own 404, whose
        # body is the app-wide JSON error: document both.
        not_found = {
            "description": ERRORS[404],
            "content": {
                SCIM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ScimError"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
        view = blp.doc(responses={"404": not_found})(view)
        return blp.doc(security=[{SCHEME: []}] if auth else [])(view)

    return decorator


def ok(status: int = 200) -> Any:
    return blp.response(status, "ScimObject", content_type=SCIM_MEDIA_TYPE)


BODY = {
    "required": True,
    "content": {SCIM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ScimObject"}}},
}


@blp.route("/ServiceProviderConfig")
class ServiceProviderConfigView(MethodView):
    @ok()
    @documented(403, 404, auth=False)
    def get(self, tenant: str) -> Response:
        """What this service provider supports (RFC 7643 §5); needs no token"""
        return dispatch(tenant, "/ServiceProviderConfig")


@blp.route("/ResourceTypes")
class ResourceTypesView(MethodView):
    @ok()
    @documented(403)
    def get(self, tenant: str) -> Response:
        """The resource types served: User (enterprise and idbridge extensions) and Group"""
        return dispatch(tenant, "/ResourceTypes")


@blp.route("/ResourceTypes/<resource_id>")
class ResourceTypeView(MethodView):
    @ok()
    @documented(403, 404)
    def get(self, tenant: str, resource_id: str) -> Response:
        """One resource type"""
        return dispatch(tenant, f"/ResourceTypes/{resource_id}")


@blp.route("/Schemas")
class SchemasView(MethodView):
    @ok()
    @documented(403)
    def get(self, tenant: str) -> Response:
        """The schemas, including `urn:ietf:params:scim:schemas:extension:idbridge:2.0:User`"""
        return dispatch(tenant, "/Schemas")


@blp.route("/Schemas/<resource_id>")
class SchemaView(MethodView):
    @ok()
    @documented(403, 404)
    def get(self, tenant: str, resource_id: str) -> Response:
        """One schema"""
        return dispatch(tenant, f"/Schemas/{resource_id}")


@blp.route("/Bulk")
class BulkView(MethodView):
    @ok()
    @blp.doc(requestBody=BODY)
    @documented(400, 413, 415)
    def post(self, tenant: str) -> Response:
        """Several operations in one request (RFC 7644 §3.7), each atomic"""
        return dispatch(tenant, "/Bulk")


@blp.route("/.search")
class RootSearchView(MethodView):
    @ok()
    @blp.doc(requestBody=BODY)
    @documented(400, 415)
    def post(self, tenant: str) -> Response:
        """Search users and groups together (RFC 7644 §3.4.3): users first, then groups"""
        return dispatch(tenant, "/.search")


def _resource_views(endpoint: str, kind: str) -> None:
    class Collection(MethodView):
        @ok()
        @documented(400, 501)
        def get(self, tenant: str) -> Response:
            return dispatch(tenant, f"/{endpoint}")

        @ok(201)
        @blp.doc(requestBody=BODY)
        @documented(400, 409, 415)
        def post(self, tenant: str) -> Response:
            return dispatch(tenant, f"/{endpoint}")

    class Search(MethodView):
        @ok()
        @blp.doc(requestBody=BODY)
        @documented(400, 415, 501)
        def post(self, tenant: str) -> Response:
            return dispatch(tenant, f"/{endpoint}/.search")

    class Item(MethodView):
        @ok()
        @blp.alt_response(304, description="Not modified (`If-None-Match`).")
        @documented(400, 404, 412)
        def get(self, tenant: str, resource_id: str) -> Response:
            return dispatch(tenant, f"/{endpoint}/{resource_id}")

        @ok()
        @blp.doc(requestBody=BODY)
        @documented(400, 404, 409, 412, 415)
        def put(self, tenant: str, resource_id: str) -> Response:
            return dispatch(tenant, f"/{endpoint}/{resource_id}")

        @ok()
        @blp.doc(requestBody=BODY)
        @documented(400, 404, 409, 412, 415)
        def patch(self, tenant: str, resource_id: str) -> Response:
            return dispatch(tenant, f"/{endpoint}/{resource_id}")

        @blp.response(204)
        @documented(404, 412)
        def delete(self, tenant: str, resource_id: str) -> Response:
            return dispatch(tenant, f"/{endpoint}/{resource_id}")

    docs = {
        (Collection, "get"): f"List or filter {kind}s (RFC 7644 §3.4.2), paged by startIndex",
        (Collection, "post"): f"Create a {kind} (RFC 7644 §3.3)",
        (Search, "post"): f"Search {kind}s with a body (RFC 7644 §3.4.3)",
        (Item, "get"): f"Read a {kind}; ETag from its version",
        (Item, "put"): f"Replace a {kind} (RFC 7644 §3.5.1); `If-Match` honoured",
        (Item, "patch"): f"Modify a {kind} (RFC 7644 §3.5.2); answers 200 with the {kind}",
        (Item, "delete"): f"Delete a {kind}"
        + (" and revoke its sessions at once" if kind == "user" else ""),
    }
    for (view, method), summary in docs.items():
        getattr(view, method).__doc__ = summary
    for view, suffix in ((Collection, ""), (Search, "/.search"), (Item, "/<resource_id>")):
        view.__name__ = f"{kind.title()}{view.__name__}"
        blp.route(f"/{endpoint}{suffix}")(view)


_resource_views("Users", "user")
_resource_views("Groups", "group")
