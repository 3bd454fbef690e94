"""A ``worker`` with ``secrets = "etcd"`` follows the run-time overrides as ``serve`` does: a
change another process writes at ``etcd_config_key`` (the API, an operator) builds the worker's
next generation, and its loops run on the new settings, without a restart. On the real etcd the
suite starts."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from entrypoints.bootstrap import build_container
from entrypoints.settings import load_settings
from tests.cli import clean_env, start_cli

pytestmark = pytest.mark.etcd


async def test_a_worker_reloads_when_the_overrides_change_in_etcd(
    tmp_path: Path, etcd_endpoint: tuple[str, int]
) -> None:
    env = {
        "CM_MASTER_KEY": "worker-overrides-tests",
        "CM_DATA_DIR": str(tmp_path / "data"),
        "CM_SECRETS": "etcd",
        "CM_ETCD_ENDPOINT": f"{etcd_endpoint[0]}:{etcd_endpoint[1]}",
        "CM_ETCD_NAMESPACE": f"/cm-worker-{uuid.uuid4().hex[:8]}",
        "CM_LOG_LEVEL": "info",
    }
    settings = load_settings(env=env)
    api = await build_container(settings, env=env)  # the API's process, as far as the store goes
    await api.connectors.list("org-1")  # its first read makes the database: the deployment the worker needs
    worker = start_cli("worker", env=clean_env(**env), merge_stderr=True)
    lines: list[str] = []
    output = worker.stdout
    assert output is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(output.readline, "")), daemon=True)
    reader.start()
    try:
        # the worker may start watching after a write: write again (a new value) until it reloads
        deadline = time.monotonic() + 60
        batch = 10
        while not any("generation 2 is live" in line for line in lines):
            assert worker.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "the worker never reloaded:\n" + "".join(lines)
            batch += 1
            await api.secrets_store.put(settings.etcd_config_key, json.dumps({"refresh_batch_size": batch}))
            await asyncio.sleep(0.5)
        reloaded = next(line for line in lines if "generation 2 is live" in line)
        assert "refresh_batch_size" in reloaded, reloaded
    finally:
        await api.aclose()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        reader.join(timeout=10)
        output.close()
    assert code == 0, "".join(lines)
