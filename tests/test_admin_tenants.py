"""``/admin/v1/tenants``: create, read, page, change and delete tenants."""

from __future__ import annotations

from sqlalchemy import func, select

from app import runtime, tenancy
from app.models import (
    Client,
    Grant,
    IdentityProvider,
    Integration,
    ScimToken,
    Tenant,
    WebhookSecret,
)
from tests.conftest import remember_secret

TENANTS = "/admin/v1/tenants"
IDP = {
    "issuer": "https://idp.acme.example/oauth2/default",
    "jwks_uri": "https://idp.acme.example/oauth2/default/v1/keys",
    "audiences": ["api://platform"],
    "algorithms": ["RS256", "ES256"],
}


def test_a_created_tenant_is_returned_whole_with_defaults(client, admin_headers):
    response = client.post(
        TENANTS,
        json={"slug": "acme", "display_name": "Acme", "mail": {"from": "no-reply@acme.example"}},
        headers=admin_headers,
    )
    assert response.status_code == 201
    body = response.get_json()
    assert {key: body[key] for key in ("slug", "display_name", "idp", "mail", "oidc")} == {
        "slug": "acme",
        "display_name": "Acme",
        "idp": None,
        "mail": {"from": "no-reply@acme.example", "password_reset_url": ""},
        "oidc": {"logout_redirect_uris": []},
    }
    assert body["users"] == {
        "id_attribute": "externalId",
        "customer_attribute": "urn:ietf:params:scim:schemas:extension:idbridge:2.0:User:customer",
        "customer_required": True,
        "customer_claim": "customer",
    }
    assert body["created_at"].endswith("+00:00") and body["updated_at"]
    assert client.get(f"{TENANTS}/acme", headers=admin_headers).get_json() == body


def test_the_connector_secret_is_write_only_and_sealed_at_rest(app, client, admin_headers):
    secret = remember_secret("okta-api-token-" + "k" * 24)
    idp = IDP | {"connector": "okta", "connector_secret": secret}
    response = client.post(TENANTS, json={"slug": "acme", "idp": idp}, headers=admin_headers)
    assert response.status_code == 201
    for answer in (response, client.get(f"{TENANTS}/acme", headers=admin_headers)):
        assert secret not in answer.get_data(as_text=True)
        assert "connector_secret" not in answer.get_json()["idp"]
        assert answer.get_json()["idp"]["connector_secret_set"] is True
    with runtime.of(app).db.read() as session:
        tenancy.cross_tenant(session)
        sealed = session.scalar(select(IdentityProvider.connector_secret_sealed))
    assert sealed.startswith("v1.") and secret not in sealed


def test_a_duplicate_slug_is_a_409(client, admin_headers):
    assert client.post(TENANTS, json={"slug": "acme"}, headers=admin_headers).status_code == 201
    again = client.post(TENANTS, json={"slug": "acme"}, headers=admin_headers)
    assert again.status_code == 409
    assert again.get_json()["errors"] == {"json": {"slug": ["tenant 'acme' already exists"]}}


def test_a_bad_slug_is_a_422(client, admin_headers):
    for slug in ("Acme", "-acme", "a" * 64, "ac me", ""):
        response = client.post(TENANTS, json={"slug": slug}, headers=admin_headers)
        assert response.status_code == 422, slug
        assert set(response.get_json()["errors"]["json"]) == {"slug"}


def test_patch_replaces_the_sections_given_and_keeps_the_others(client, admin_headers):
    client.post(
        TENANTS,
        json={
            "slug": "acme",
            "display_name": "Acme",
            "idp": IDP,
            "users": {"id_attribute": "userName", "customer_required": False},
        },
        headers=admin_headers,
    )
    before = client.get(f"{TENANTS}/acme", headers=admin_headers).get_json()
    response = client.patch(
        f"{TENANTS}/acme", json={"users": {"customer_claim": "cust"}}, headers=admin_headers
    )
    assert response.status_code == 200
    after = response.get_json()
    # the section given is replaced whole: what it leaves out is back to its default
    assert after["users"] == {
        "id_attribute": "externalId",
        "customer_attribute": "urn:ietf:params:scim:schemas:extension:idbridge:2.0:User:customer",
        "customer_required": True,
        "customer_claim": "cust",
    }
    assert after["display_name"] == "Acme" and after["idp"] == before["idp"]
    assert after["updated_at"] > before["updated_at"]
    assert client.get(f"{TENANTS}/acme", headers=admin_headers).get_json() == after


def test_patch_with_a_null_idp_removes_it(client, admin_headers):
    client.post(TENANTS, json={"slug": "acme", "idp": IDP}, headers=admin_headers)
    response = client.patch(f"{TENANTS}/acme", json={"idp": None}, headers=admin_headers)
    assert response.status_code == 200 and response.get_json()["idp"] is None
    assert client.get(f"{TENANTS}/acme", headers=admin_headers).get_json()["idp"] is None
    again = client.patch(f"{TENANTS}/acme", json={"idp": IDP}, headers=admin_headers)
    assert again.get_json()["idp"]["issuer"] == IDP["issuer"]


def test_patch_cannot_rename_a_tenant(client, admin_headers):
    client.post(TENANTS, json={"slug": "acme"}, headers=admin_headers)
    response = client.patch(f"{TENANTS}/acme", json={"slug": "other"}, headers=admin_headers)
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"json": {"slug": ["Unknown field."]}}


def test_patch_of_an_unknown_tenant_is_a_404(client, admin_headers):
    response = client.patch(f"{TENANTS}/nope", json={"display_name": "x"}, headers=admin_headers)
    assert response.status_code == 404


def test_tenants_are_listed_by_slug_in_keyset_pages(client, admin_headers):
    for slug in ("delta", "alpha", "echo", "charlie", "bravo"):
        client.post(TENANTS, json={"slug": slug}, headers=admin_headers)
    seen, after, pages = [], None, 0
    while True:
        query = {"limit": 2} | ({"after": after} if after else {})
        page = client.get(TENANTS, query_string=query, headers=admin_headers).get_json()
        pages += 1
        seen += [item["slug"] for item in page["items"]]
        assert set(page["items"][0]) == {"slug", "display_name", "created_at", "updated_at"}
        after = page["next"]
        if after is None:
            break
    assert seen == ["alpha", "bravo", "charlie", "delta", "echo"] and pages == 3
    everything = client.get(TENANTS, headers=admin_headers).get_json()
    assert len(everything["items"]) == 5 and everything["next"] is None
    exact = client.get(TENANTS, query_string={"limit": 5}, headers=admin_headers).get_json()
    assert exact["next"] is None
    for limit in (0, 501, "many"):
        bad = client.get(TENANTS, query_string={"limit": limit}, headers=admin_headers)
        assert bad.status_code == 422


def test_an_empty_store_lists_no_tenant(client, admin_headers):
    assert client.get(TENANTS, headers=admin_headers).get_json() == {"items": [], "next": None}


def test_deleting_a_tenant_deletes_everything_it_owns(app, client, admin_headers):
    base = f"{TENANTS}/acme"
    client.post(TENANTS, json={"slug": "acme", "idp": IDP}, headers=admin_headers)
    client.post(TENANTS, json={"slug": "other"}, headers=admin_headers)
    client.post(
        f"{base}/integrations",
        json={"name": "sf", "kind": "snowflake", "audience": "https://sf.example"},
        headers=admin_headers,
    )
    created = client.post(
        f"{base}/clients", json={"client_id": "broker", "audiences": ["sf"]}, headers=admin_headers
    ).get_json()
    remember_secret(created["client_secret"])
    client.post(
        f"{base}/grants", json={"client_id": "broker", "integration": "sf"}, headers=admin_headers
    )
    remember_secret(
        client.post(f"{base}/webhook-secrets", headers=admin_headers).get_json()["secret"]
    )
    remember_secret(client.post(f"{base}/scim-tokens", headers=admin_headers).get_json()["token"])

    response = client.delete(base, headers=admin_headers)
    assert response.status_code == 204 and response.data == b""
    assert client.get(base, headers=admin_headers).status_code == 404
    assert client.delete(base, headers=admin_headers).status_code == 404
    with runtime.of(app).db.read() as session:
        tenancy.cross_tenant(session)
        for model in (IdentityProvider, Client, Integration, Grant, WebhookSecret, ScimToken):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model
        assert session.scalars(select(Tenant.slug)).all() == ["other"]
    # the slug is free again, and the new tenant starts empty
    assert client.post(TENANTS, json={"slug": "acme"}, headers=admin_headers).status_code == 201
    for collection in ("clients", "integrations", "grants", "webhook-secrets", "scim-tokens"):
        assert client.get(f"{base}/{collection}", headers=admin_headers).get_json() == []
