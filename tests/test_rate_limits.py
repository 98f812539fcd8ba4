"""Rate limits per tenant and per caller at the token endpoint, the webhooks and SCIM: 429 with
``Retry-After`` in each caller's protocol; counted in process memory, or in Redis (one count for
every instance) when it is configured; a Redis that fails does not refuse traffic."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from flask import Flask

from app import create_app, credentials, migrate, runtime, tenants
from tests import redis_support
from tests.conftest import make_settings
from tests.redis_support import OwnRedis
from tests.webhook_support import make_tenant, signed

own_redis = redis_support.own_redis

TOKEN = "/t/acme/oauth/token"
FORM = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange"}


def _app(tmp_path: Path, **overrides: str) -> Flask:
    flask_app = create_app(make_settings(tmp_path, **overrides))
    migrate.upgrade(runtime.of(flask_app).db)
    return flask_app


def _basic(client_id: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:wrong".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_the_token_endpoint_answers_429_in_oauth_form_per_client(tmp_path):
    app = _app(tmp_path, rate_limit_client="2/minute", rate_limit_tenant="")
    make_tenant(app)
    client = app.test_client()
    for _ in range(2):
        assert client.post(TOKEN, data=FORM, headers=_basic("broker")).status_code == 401
    refused = client.post(TOKEN, data=FORM, headers=_basic("broker"))
    assert refused.status_code == 429
    assert refused.json["error"] == "temporarily_unavailable"
    assert refused.headers["Cache-Control"] == "no-store"
    assert int(refused.headers["Retry-After"]) > 0
    # another client of the tenant, and the same client id under another tenant, still pass
    assert client.post(TOKEN, data=FORM, headers=_basic("other")).status_code == 401
    make_tenant(app, "globex")
    assert (
        client.post("/t/globex/oauth/token", data=FORM, headers=_basic("broker")).status_code == 401
    )


def test_the_tenant_limit_counts_every_caller_together(tmp_path):
    app = _app(tmp_path, rate_limit_client="", rate_limit_tenant="3/minute")
    make_tenant(app)
    client = app.test_client()
    statuses = [
        client.post(TOKEN, data=FORM, headers=_basic(f"client-{n}")).status_code for n in range(4)
    ]
    assert statuses == [401, 401, 401, 429]


def test_webhooks_answer_429_with_the_webhook_error_body(tmp_path):
    app = _app(tmp_path, rate_limit_client="1/minute")
    acme = make_tenant(app)
    client = app.test_client()
    assert signed(client, acme, "get", {"id": "nobody"}).status_code == 404
    refused = signed(client, acme, "get", {"id": "nobody"})
    assert refused.status_code == 429
    assert refused.json["code"] == "unavailable" and refused.json["message"]
    assert int(refused.headers["Retry-After"]) > 0


def test_scim_answers_429_as_a_scim_error(tmp_path):
    app = _app(tmp_path, rate_limit_client="1/minute")
    rt = runtime.of(app)
    make_tenant(app)
    with rt.db.transaction() as session:
        tenant = tenants.find(session, "acme")
        credentials.add_scim_token(session, rt.keyring, tenant, "scim-token-" + "x" * 40)
    client = app.test_client()
    headers = {"Authorization": "Bearer scim-token-" + "x" * 40}
    assert client.get("/t/acme/scim/v2/Users", headers=headers).status_code == 200
    for path in ("/t/acme/scim/v2/Users", "/t/acme/scim/v2/Nowhere"):
        refused = client.get(path, headers=headers)
        assert refused.status_code == 429
        assert refused.content_type == "application/scim+json"
        assert refused.json["status"] == "429"
        assert "urn:ietf:params:scim:api:messages:2.0:Error" in refused.json["schemas"]
        assert int(refused.headers["Retry-After"]) > 0
    other = {"Authorization": "Bearer another-token-" + "y" * 40}
    assert client.get("/t/acme/scim/v2/Users", headers=other).status_code == 401


def test_with_redis_two_instances_share_one_count(tmp_path, own_redis: OwnRedis):
    first = _app(tmp_path / "a", redis_url=own_redis.url, rate_limit_client="2/minute")
    second = _app(tmp_path / "b", redis_url=own_redis.url, rate_limit_client="2/minute")
    make_tenant(first)
    make_tenant(second)
    assert first.test_client().post(TOKEN, data=FORM, headers=_basic("broker")).status_code == 401
    assert second.test_client().post(TOKEN, data=FORM, headers=_basic("broker")).status_code == 401
    refused = first.test_client().post(TOKEN, data=FORM, headers=_basic("broker"))
    assert refused.status_code == 429


def test_with_redis_down_limits_fall_back_to_the_process_and_traffic_flows(
    tmp_path, own_redis: OwnRedis
):
    app = _app(tmp_path, redis_url=own_redis.url, rate_limit_client="3/minute")
    make_tenant(app)
    client = app.test_client()
    own_redis.stop()
    statuses = [
        client.post(TOKEN, data=FORM, headers=_basic("broker")).status_code for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]


@pytest.mark.parametrize("value", ["lots", "5 per fortnight"])
def test_a_bad_limit_stops_the_start(tmp_path, value):
    from app.settings import SettingsError

    with pytest.raises(SettingsError, match="IDBRIDGE_RATE_LIMIT_CLIENT"):
        make_settings(tmp_path, rate_limit_client=value)
