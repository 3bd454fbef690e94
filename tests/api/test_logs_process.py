"""The log of a real ``connector-manager serve`` process, its stderr a pipe (not a terminal):
JSON lines only, uvicorn's included; each request's lines carry its id, which the response
echoes; one access line per request; a banner naming the backends, the data dir and the new
master key; no planted secret anywhere."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_serve_process import REPO, cli, free_port

pytestmark = pytest.mark.slow

SECRET = "PLANTED-LOG-SECRET-9e41"
ORG = "org-logs-1"
P = "/api/v1/connectors"


def start_serve(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"serve did not start: {proc.communicate()}")


def test_serve_writes_json_lines_with_request_ids_and_no_secret(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_serve(data, port)
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
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
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
