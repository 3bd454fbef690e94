"""Every port on its real server: two ``serve`` processes behind the same MongoDB, etcd, Kafka
and Redis. A toggle on one is seen at once by the other; the event is read back from Kafka;
the secret read raw from etcd is ciphertext; a restart keeps state; a server outage is a quick
503 and the service recovers by itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import aetcd
import httpx
import pytest

from tests.contract.backends.kafka import Received, read_back
from tests.servers import ServerProcess, free_port

pytestmark = [pytest.mark.mongo, pytest.mark.etcd, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
P = "/api/v1/connectors"
MASTER_KEY = "e2e-master-key-" + uuid.uuid4().hex


class Serve:
    def __init__(self, config: Path, data_dir: Path, env: dict[str, str]) -> None:
        self.config, self.data_dir, self.env = config, data_dir, env
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "entrypoints.cli",
                "serve",
                "--config",
                str(self.config),
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.communicate()[0])
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError("serve did not become healthy")

    def stop(self) -> str:
        if self.proc is None or self.proc.poll() is not None:
            return ""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        return out


def cli(*args: str, config: Path, data_dir: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", *args, "--config", str(config), "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def admin_headers(org: str, config: Path, data_dir: Path, env: dict[str, str]) -> dict[str, str]:
    token = cli(
        "token",
        "--org",
        org,
        "--user",
        "alice",
        "--email",
        "alice@example.com",
        "--admin",
        config=config,
        data_dir=data_dir,
        env=env,
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def deployment(
    tmp_path: Path, mongo_url: str, etcd_endpoint: tuple[str, int], kafka_bootstrap: str, redis_url: str
) -> Iterator[tuple[Path, dict[str, str]]]:
    config = tmp_path / "cm.toml"
    host, port = etcd_endpoint
    config.write_text(
        f"""
storage = "mongo"
secrets = "etcd"
events = "kafka"
cache = "redis"
locks = "redis"
mongo_url = "{mongo_url}"
mongo_database = "e2e_{uuid.uuid4().hex[:8]}"
etcd_endpoint = "{host}:{port}"
etcd_namespace = "/e2e-{uuid.uuid4().hex[:8]}"
kafka_bootstrap = "{kafka_bootstrap}"
redis_url = "{redis_url}"
relay_interval_seconds = 0.2
refresh_interval_seconds = 5
""",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
    env["CM_MASTER_KEY"] = MASTER_KEY
    yield config, env


def test_two_processes_on_real_servers(
    deployment: tuple[Path, dict[str, str]], tmp_path: Path, kafka_bootstrap: str, etcd_endpoint: tuple[str, int]
) -> None:
    config, env = deployment
    a = Serve(config, tmp_path / "a", env)
    b = Serve(config, tmp_path / "b", env)
    a.start()
    b.start()
    logs = []
    try:
        org = f"org-{uuid.uuid4().hex[:8]}"
        admin = admin_headers(org, config, tmp_path / "a", env)
        scoped = {
            "Authorization": "Bearer "
            + cli("token", "--scoped", "--org", org, config=config, data_dir=tmp_path / "b", env=env)
        }
        health = httpx.get(f"{a.url}/api/v1/health", timeout=10).json()
        assert health["services"] == {"storage": "healthy", "etcd": "healthy", "redis": "healthy", "kafka": "healthy"}

        body = {
            "baseUrl": "https://acme.atlassian.net",
            "auth": {"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": "PLANTED-E2E-SECRET"},
        }
        r = httpx.put(f"{a.url}{P}/config/confluence", json=body, headers=admin, timeout=10)
        assert r.status_code == 200, r.text
        # warm B's cache with the disabled state, then toggle on A
        assert [c["key"] for c in httpx.get(f"{b.url}{P}/active", headers=admin, timeout=10).json()] == []
        r = httpx.post(f"{a.url}{P}/toggle/confluence", headers=admin, timeout=10)
        assert r.json()["connector"]["isEnabled"] is True
        assert [c["key"] for c in httpx.get(f"{b.url}{P}/active", headers=admin, timeout=10).json()] == ["confluence"]
        r = httpx.post(f"{b.url}{P}/toggle/confluence", headers=admin, timeout=10)
        assert r.json()["connector"]["isEnabled"] is False
        assert httpx.get(f"{a.url}{P}/active", headers=admin, timeout=10).json() == []

        # the events, read back from Kafka: right topic, key, headers and payload
        events = httpx.get(f"{b.url}{P}/internal/events", headers=scoped, timeout=10).json()["events"]
        toggles = [e for e in events if e["eventType"] in ("appEnabled", "appDisabled")]
        assert [e["eventType"] for e in toggles] == ["appEnabled", "appDisabled"]
        received = asyncio.run(read_back(kafka_bootstrap, [e["eventId"] for e in toggles], topics=["entity-events"]))
        first: dict[str, Received] = {}
        for rec in received:
            first.setdefault(rec.event_id, rec)
        assert set(first) == {e["eventId"] for e in toggles}
        for expected in toggles:
            rec = first[expected["eventId"]]
            assert rec.key == f"{org}:confluence".encode()
            assert rec.headers["eventType"] == expected["eventType"].encode()
            assert rec.headers["timestamp"] == str(expected["timestamp"]).encode()
            assert json.loads(rec.value or b"") == expected
        order = [rec.event_id for rec in received if rec.event_id in first]
        assert order.index(toggles[0]["eventId"]) < order.index(toggles[1]["eventId"])

        # the secret, read raw from etcd, is ciphertext bound to its path
        namespace = tomllib.loads(config.read_text(encoding="utf-8"))["etcd_namespace"]

        async def raw_etcd() -> bytes:
            client = aetcd.Client(host=etcd_endpoint[0], port=etcd_endpoint[1])
            try:
                got = await client.get(f"{namespace}/services/connectors/confluence/config/{org}".encode())
                assert got is not None
                return bytes(got.value)
            finally:
                await client.close()

        raw = asyncio.run(raw_etcd())
        assert raw.startswith(b"v1:") and b"PLANTED-E2E-SECRET" not in raw

        # restart A: state is still there
        logs.append(a.stop())
        a.start()
        cfg = httpx.get(f"{a.url}{P}/config/confluence", headers=admin, timeout=10).json()
        assert cfg["config"]["auth"]["hasApiToken"] is True and cfg["isEnabled"] is False
    finally:
        logs += [a.stop(), b.stop()]
    for log in logs:
        assert "PLANTED-E2E-SECRET" not in log


def test_outages_are_quick_503s_and_heal(
    deployment: tuple[Path, dict[str, str]],
    tmp_path: Path,
    mongo_server: ServerProcess,
    etcd_server: ServerProcess,
) -> None:
    config, env = deployment
    a = Serve(config, tmp_path / "a", env)
    a.start()
    try:
        org = f"org-{uuid.uuid4().hex[:8]}"
        admin = admin_headers(org, config, tmp_path / "a", env)
        assert httpx.get(f"{a.url}{P}/", headers=admin, timeout=10).status_code == 200

        mongo_server.stop()
        try:
            t = time.monotonic()
            r = httpx.get(f"{a.url}{P}/config/jira", headers=admin, timeout=30)
            assert r.status_code == 503 and r.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
            assert time.monotonic() - t < 6
            assert httpx.get(f"{a.url}/api/v1/health", timeout=30).status_code == 503
        finally:
            mongo_server.start()
        deadline = time.monotonic() + 30
        while httpx.get(f"{a.url}{P}/", headers=admin, timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "did not recover after MongoDB came back"
            time.sleep(0.5)

        body = {
            "baseUrl": "https://acme.atlassian.net",
            "auth": {"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": "t"},
        }
        etcd_server.stop()
        try:
            t = time.monotonic()
            r = httpx.put(f"{a.url}{P}/config/confluence", json=body, headers=admin, timeout=30)
            assert r.status_code == 503, r.text
            assert time.monotonic() - t < 8
        finally:
            etcd_server.start()
        # nothing was half-written: the connector was not saved without its secret
        deadline = time.monotonic() + 30
        while True:
            r = httpx.put(f"{a.url}{P}/config/confluence", json=body, headers=admin, timeout=30)
            if r.status_code == 200:
                break
            assert time.monotonic() < deadline, r.text
            time.sleep(0.5)
        assert r.json()["connector"]["version"] == 1
    finally:
        a.stop()
