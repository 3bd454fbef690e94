"""The outbox relay on a cluster of brokers: ``kafka_bootstrap`` names two Tansu brokers that
share one log; each in turn dies (SIGKILL) while a ``serve`` process keeps toggling, and every
event still reaches the topic, none lost, each acknowledged toggle answered at once."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.contract.backends.kafka import read_back
from tests.e2e.test_real_servers import MASTER_KEY, P, Serve, admin_headers, cli
from tests.servers import KafkaCluster

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def cluster() -> Iterator[KafkaCluster]:
    group = KafkaCluster(brokers=2)
    try:
        yield group
    finally:
        group.close()


def toggles(serve: Serve, headers: dict[str, str], count: int) -> None:
    for _ in range(count):
        r = httpx.post(f"{serve.url}{P}/toggle/confluence", headers=headers, timeout=10)
        assert r.status_code == 200, r.text


def test_the_relay_carries_on_when_a_broker_dies(cluster: KafkaCluster, tmp_path: Path) -> None:
    config = tmp_path / "cm.toml"
    config.write_text(
        f"""
events = "kafka"
kafka_bootstrap = {json.dumps(cluster.bootstrap)}
relay_interval_seconds = 0.2
run_refresher = false
""",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
    env["CM_MASTER_KEY"] = MASTER_KEY
    serve = Serve(config, tmp_path / "data", env)
    serve.start()
    try:
        org = f"org-{uuid.uuid4().hex[:8]}"
        admin = admin_headers(org, config, tmp_path / "data", env)
        scoped_token = cli("token", "--scoped", "--org", org, config=config, data_dir=tmp_path / "data", env=env)
        scoped = {"Authorization": f"Bearer {scoped_token}"}
        body = {
            "baseUrl": "https://acme.atlassian.net",
            "auth": {"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": "PLANTED-CLUSTER-SECRET"},
        }
        assert httpx.put(f"{serve.url}{P}/config/confluence", json=body, headers=admin, timeout=10).status_code == 200
        toggles(serve, admin, 4)
        # whichever broker the relay's producer uses, each one dies once, the other standing
        for dying, standing in ((0, 1), (1, 0)):
            cluster.brokers[dying].kill()
            toggles(serve, admin, 4)
            events = httpx.get(f"{serve.url}{P}/internal/events", headers=scoped, timeout=10).json()["events"]
            wanted = {e["eventId"] for e in events}
            assert len(wanted) >= 1 + 4 + 4 * (dying + 1)
            got = asyncio.run(read_back(cluster.bootstrap[standing], wanted, timeout=60))
            assert {r.event_id for r in got} == wanted, "an event never reached the topic"
            cluster.brokers[dying].start()  # back on its port, on the same log
    finally:
        log = serve.stop()
    assert "PLANTED-CLUSTER-SECRET" not in log
