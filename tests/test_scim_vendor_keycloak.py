"""Keycloak SCIM plugins: a full PUT to the ``meta.location`` we returned (with ``id`` and
``meta`` in the body), and emails without ``type``."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.scim_support import IDBRIDGE, Scim, make_tenant

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.fixture
def scim(app, client) -> Scim:
    return Scim(client, "kc", make_tenant(app, "kc"))


def test_full_put_to_meta_location_with_emails_without_type(scim):
    body = {
        "schemas": [CORE_USER, IDBRIDGE],
        "userName": "alice",
        "externalId": "9b7c4a52-kc",
        "emails": [{"value": "alice@kc.example", "primary": True}],
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "active": True,
        IDBRIDGE: {"customer": "C-9"},
    }
    created = scim.post("/Users", body)
    assert created.status_code == 201, created.get_json()
    resource = created.get_json()
    location = urlsplit(resource["meta"]["location"])
    assert location.path == f"/t/kc/scim/v2/Users/{resource['id']}"
    resource["name"]["givenName"] = "Alicia"
    resource["emails"] = [{"value": "alicia@kc.example"}]
    response = scim.client.put(
        location.path, json=resource, headers=scim.headers, content_type="application/scim+json"
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["name"]["givenName"] == "Alicia"
    assert response.get_json()["emails"] == [{"value": "alicia@kc.example"}]
    assert response.get_json()["meta"]["version"] == 'W/"2"'
