"""The log of a real ``connector-manager serve`` process, its stderr a pipe (not a terminal):
JSON lines only, uvicorn's included; each request's lines carry its id, which the response
echoes; one access line per request; a banner naming the backends, the data dir and the new
master key; no planted secret anywhere."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.test_serve_process import Server, cli, free_port
from tests.cli import clean_env, start_cli

pytestmark = pytest.mark.slow

SECRET = "PLANTED-LOG-SECRET-9e41"
ORG = "org-logs-1"
P = "/api/v1/connectors"


def test_serve_writes_json_lines_with_request_ids_and_no_secret(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(data, free_port(), stderr_apart=True)
    url = server.url
    server.start()
    try:
        token = cli("token", "--org", ORG, "--user", "u1", "--email", "u1@example.com", "--admin", data_dir=data)
        bearer = token.stdout.strip()
        auth = {"Authorization": f"Bearer {bearer}"}
        listed = httpx.get(f"{url}{P}/active", headers={**auth, "X-Request-ID": "test-req-0001"}, timeout=10)
        body = {
            "baseUrl": "https://acme.atlassian.net",
            "auth": {"authType": "API_TOKEN", "email": "a@acme.example", "apiToken": SECRET},
        }
        saved = httpx.put(
            f"{url}{P}/config/confluence", json=body, headers={**auth, "X-Request-ID": "test-req-0002"}, timeout=10
        )
        toggled = httpx.post(f"{url}{P}/toggle/confluence", headers=auth, timeout=10)  # no id: one is made
        odd = httpx.get(f"{url}/no/such/page", headers={"X-Request-ID": 'bad id"}'}, timeout=10)
        key_file = (data / "master.key").read_text(encoding="utf-8").strip()
    finally:
        out = server.stop()
    err = server.stderr
    assert server.proc is not None and server.proc.returncode == 0, err
    assert (listed.status_code, saved.status_code, toggled.status_code, odd.status_code) == (200, 200, 200, 404)

    lines = err.splitlines()
    records: list[dict[str, Any]] = [json.loads(line) for line in lines]  # every line is JSON
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records)
    assert any(r["logger"] == "uvicorn.error" and "Started server process" in r["message"] for r in records)

    banner = next(r for r in records if r.get("process") == "serve")
    assert (banner["storage"], banner["secrets"], banner["events"], banner["cache"]) == (
        "sqlite",
        "sqlite",
        "outbox",
        "none",
    )
    assert banner["data_dir"] == str(data.resolve())
    assert banner["master_key_generated"] is True and "back it up" in banner["message"]
    assert str(data.resolve()) in banner["message"] and "storage=sqlite" in banner["message"]

    assert listed.headers["x-request-id"] == "test-req-0001"
    first = [r for r in records if r.get("request_id") == "test-req-0001"]
    assert [r["logger"] for r in first] == ["connector_manager.access"]  # one access line per request
    access = first[0]
    assert (access["method"], access["route"], access["status"], access["org"]) == ("GET", f"{P}/active", 200, ORG)
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 0

    assert saved.headers["x-request-id"] == "test-req-0002"
    second = [r for r in records if r.get("request_id") == "test-req-0002"]
    assert any(r["message"].startswith("configuration saved: org=org-logs-1 connector=confluence") for r in second)
    assert second[-1]["logger"] == "connector_manager.access" and second[-1]["route"] == f"{P}/config/{{name}}"

    made = toggled.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    third = [r for r in records if r.get("request_id") == made]
    assert any(r["message"].startswith("connector enabled: org=org-logs-1 connector=confluence") for r in third)
    assert third[-1]["route"] == f"{P}/toggle/{{name}}" and third[-1]["status"] == 200

    refused = odd.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", refused)  # an unsafe id is replaced, never echoed
    assert [r["route"] for r in records if r.get("request_id") == refused] == ["unmatched"]

    assert not any(r["logger"] == "uvicorn.access" for r in records)
    for secret in (SECRET, bearer, key_file, 'bad id"}'):
        assert secret not in err and secret not in out


def test_a_worker_logs_json_and_serves_its_metrics_on_its_own_port(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(data, free_port())
    server.start()  # the first start creates the data dir and its key
    server.stop()
    port = free_port()
    worker = start_cli("worker", "--data-dir", str(data), "--metrics-port", str(port), env=clean_env())
    try:
        scraped = None
        deadline = time.monotonic() + 30
        while scraped is None and time.monotonic() < deadline:
            try:
                scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        err = worker.communicate(timeout=30)[1]
    assert worker.returncode == 0, err
    assert scraped is not None and scraped.status_code == 200, err
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(scraped.text)
        for s in f.samples
    }
    assert got[("connector_manager_dependency_up", (("dependency", "storage"), ("required", "true")))] == 1
    assert not [name for name, _ in got if name == "connector_manager_http_requests_total"]  # a worker serves no API
    records = [json.loads(line) for line in err.splitlines()]
    banner = next(r for r in records if r.get("process") == "worker")
    assert (banner["metrics_port"], banner["master_key_generated"], banner["data_dir"]) == (
        port,
        False,
        str(data.resolve()),
    )
    assert any(r["message"] == f"worker: metrics at http://127.0.0.1:{port}/metrics" for r in records)
