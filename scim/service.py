"""The SCIM protocol as idbridge speaks it: scim2-server's ``ScimService`` with a tolerant
reading of what identity providers really send, and an exact answer.

Tolerance (tested per vendor in ``tests/test_scim_vendor_*.py``) happens in two places:

- the ``ScimPolicy`` of ``scim.resources`` (unknown attributes and schemas ignored, Entra's
  member removal by ``value``, filtered paths on an empty list create the entry);
- ``normalize`` below, on the raw JSON before validation: empty strings and nulls are unset
  attributes (OneLogin's ``"id": null``, Entra ID's ``"$ref": null``), and the enterprise
  ``manager`` given as a bare string is its ``value`` (Entra ID).

Everything else (capitalised ops, ``"False"`` as a string, path-less maps with dotted and URN
keys) scim2-models already reads. PATCH answers 200 with the resource (RFC 7644 §3.5.2 allows
204; identity providers expect the resource).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, TypeVar

from pydantic_core import from_json
from scim2_models import BaseModel, Context, InvalidSyntaxException, Resource, ResponseParameters
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService

ModelT = TypeVar("ModelT", bound=BaseModel)
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"


def normalize(payload: Any) -> Any:
    """Rewrite the common deviations of identity providers into plain SCIM."""
    if isinstance(payload, list):
        return [normalize(item) for item in payload]
    if not isinstance(payload, dict):
        return payload
    result: dict[str, Any] = {}
    for key, value in payload.items():
        if key != "value" and (value == "" or value is None):
            continue  # OneLogin, Entra ID: empty strings and nulls for unset attributes
        if key.lower().endswith("manager") and isinstance(value, str):
            value = {"value": value}  # Entra ID: the manager's id as a bare string
        result[key] = normalize(value)
    operations = _get(result, "Operations")
    if isinstance(operations, list):
        for operation in operations:
            if isinstance(operation, dict):
                _normalize_operation(operation)
    return result


def _normalize_operation(operation: dict[str, Any]) -> None:
    path = str(_get(operation, "path") or "")
    value = _get(operation, "value")
    if path.lower().endswith("manager") and isinstance(value, str):
        operation["value"] = {"value": value}
    elif path.lower().endswith("manager.value") or path.lower().endswith("manager"):
        return
    if isinstance(value, dict):
        for key in list(value):
            if key.lower().endswith("manager") and isinstance(value[key], str):
                value[key] = {"value": value[key]}


def _get(data: dict[str, Any], name: str) -> Any:
    for key, value in data.items():
        if key.lower() == name.lower():
            return value
    return None


class IdbridgeScimService(ScimService):
    """scim2-server's service with idbridge's tolerant reading and PATCH answer."""

    def read_body(
        self, model: type[ModelT], body: bytes, content_type: str | None, scim_ctx: Context
    ) -> ModelT:
        self.ensure_json(content_type)
        try:
            payload = from_json(body) if body else None
        except ValueError as exc:
            raise InvalidSyntaxException(detail="the body is not valid JSON") from exc
        if not isinstance(payload, dict):
            raise InvalidSyntaxException(detail="the body must be a JSON object")
        return super().read_body(model, json.dumps(normalize(payload)).encode(), None, scim_ctx)

    def patch_response(
        self,
        base_url: str,
        resource: Resource[Any],
        response_parameters: ResponseParameters[Any],
    ) -> ScimResponse:
        return self.resource_response(
            self.publish(base_url, resource),
            Context.RESOURCE_REPLACEMENT_RESPONSE,
            response_parameters,
            status=HTTPStatus.OK,
        )
