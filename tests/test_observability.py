"""Request ids, JSON logs, metrics and probes: what an operator's dashboards rely on."""

from __future__ import annotations

import json
import logging

from app import create_app, runtime
from tests.conftest import captured_logs, make_settings, remember_secret


def _lines_for(request_id: str) -> list[dict]:
    return [json.loads(line) for line in captured_logs() if request_id in line]


def test_a_request_id_is_made_echoed_and_logged(client):
    response = client.get("/healthz")
    request_id = response.headers["X-Request-Id"]
    assert len(request_id) == 32
    (line,) = _lines_for(request_id)
    assert line["logger"] == "idbridge.access"
    assert line["status"] == 200 and line["path"] == "/healthz"
    assert line["request_id"] == request_id and line["duration_ms"] >= 0


def test_a_well_formed_incoming_request_id_is_kept_and_a_bad_one_replaced(client):
    assert (
        client.get("/healthz", headers={"X-Request-Id": "lb-1234.abc"}).headers["X-Request-Id"]
        == "lb-1234.abc"
    )
    replaced = client.get("/healthz", headers={"X-Request-Id": "bad id; forged log line"})
    assert replaced.headers["X-Request-Id"] != "bad id; forged log line"
    assert "forged log line" not in "\n".join(captured_logs())


def test_query_strings_never_reach_the_log(client):
    token = remember_secret("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")
    response = client.get(f"/healthz?access_token={token}")
    (line,) = _lines_for(response.headers["X-Request-Id"])
    assert line["path"] == "/healthz" and token not in json.dumps(line)


def test_credentials_in_a_message_are_redacted(client):
    secret = remember_secret("whsec_c2VjcmV0LXZhbHVlLWZvci10ZXN0aW5nLW9ubHk=")
    logging.getLogger("idbridge.test").warning("careless message with %s inside", secret)
    last = captured_logs()[-1]
    assert "careless message" in last and secret not in last and "[redacted]" in last


def test_metrics_count_requests_by_endpoint_and_status(client):
    for _ in range(3):
        client.get("/healthz")
    client.get("/no-such-page")
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'idbridge_http_requests_total{endpoint="probes.healthz",method="GET",status="200"} 3.0'
        in text
    )
    assert 'endpoint="unmatched",method="GET",status="404"' in text
    assert "idbridge_http_request_duration_seconds_bucket" in text


def test_readyz_reports_an_unreachable_database(tmp_path):
    broken = create_app(
        make_settings(
            tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none", db_timeout=1
        )
    )
    response = broken.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "checks": {"database": "unreachable"}}
    assert broken.test_client().get("/healthz").status_code == 200


def test_two_apps_live_side_by_side(app, tmp_path):
    other = create_app(make_settings(tmp_path / "other"))
    assert runtime.of(other).db is not runtime.of(app).db
    app.test_client().get("/healthz")
    other_metrics = other.test_client().get("/metrics").get_data(as_text=True)
    assert 'endpoint="probes.healthz"' not in other_metrics
    runtime.of(other).db.dispose()
