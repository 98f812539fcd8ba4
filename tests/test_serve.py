"""The real thing: `idbridge serve` under gunicorn, and `idbridge demo` (the README's first)."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import requests

from tests import processes
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, remember_secret


@pytest.fixture
def served(tmp_path, database_url):
    server = processes.serve(tmp_path, database_url)
    yield server
    server.stop()


def test_serve_answers_with_request_ids_and_metrics_over_all_workers(served):
    for _ in range(6):
        response = requests.get(served.base_url + "/healthz", timeout=5)
        assert response.status_code == 200 and response.headers["X-Request-Id"]
    metrics = requests.get(served.base_url + "/metrics", timeout=5).text
    counted = re.search(
        r'idbridge_http_requests_total\{endpoint="probes.healthz",method="GET",status="200"\} '
        r"(\d+\.\d+)",
        metrics,
    )
    assert counted and float(counted.group(1)) == 6.0
    served.stop()
    lines = [json.loads(line) for line in served.stderr().splitlines() if line.startswith("{")]
    assert any(line.get("path") == "/healthz" and line.get("request_id") for line in lines)
    assert SECRET_KEY not in served.stderr() and ADMIN_TOKEN not in served.stderr()


def _run_curl(command: str) -> requests.Response:
    """Carry out one printed `curl` call (the options the demo prints) with requests."""
    words = shlex.split(command)
    assert words[0] == "curl"
    method, headers, body, url = "GET", {}, None, None
    index = 1
    while index < len(words):
        word = words[index]
        if word == "-X":
            method, index = words[index + 1], index + 1
        elif word == "-H":
            name, value = words[index + 1].split(":", 1)
            headers[name] = value.strip()
            index += 1
        elif word in ("-d", "--data"):
            body, index = words[index + 1], index + 1
        elif not word.startswith("-"):
            url = word
        index += 1
    assert url and url.startswith("http://127.0.0.1:")
    return requests.request(method, url, headers=headers, data=body, timeout=10)


def test_the_demo_prints_calls_that_work(tmp_path):
    port = processes.free_port()
    demo = processes.start(
        ["demo", "--port", str(port)],
        {"IDBRIDGE_INSTANCE_PATH": str(tmp_path / "instance")},
        tmp_path,
        port,
    )
    try:
        printed = demo.stdout()
        secret = re.search(r"secret \(shown once\): (\S+)", printed)
        assert secret, printed
        remember_secret(secret.group(1))
        made = re.findall(r"\(made for this run\): (\S+)", printed)
        assert len(made) == 2
        for value in made:
            remember_secret(value)
        commands = [line for line in printed.splitlines() if line.startswith("curl ")]
        assert len(commands) >= 8
        answers = []
        for command in commands:
            response = _run_curl(command)
            assert response.status_code < 300, (command, response.status_code, response.text)
            answers.append(response)
            for value in re.findall(r'"(?:secret|token|client_secret)": ?"([^"]+)"', response.text):
                remember_secret(value)
    finally:
        demo.stop()
    webhook_user = next(a.json() for a in answers if "/webhooks/users/get" in a.url)
    assert webhook_user["id"] == "00u-ada" and webhook_user["email"] == "ada@example.com"
    token = (tmp_path / "instance" / "demo_admin_token").read_text().strip()
    assert token not in demo.stderr() and secret.group(1) not in demo.stderr()
    # a second start keeps the tenant and its client, and shows no secret again
    demo = processes.start(
        ["demo", "--port", str(port)],
        {"IDBRIDGE_INSTANCE_PATH": str(tmp_path / "instance")},
        tmp_path,
        port,
    )
    demo.stop()
    assert "client 'broker' secret" not in demo.stdout()
