"""``connector-manager keys rotate`` with the secrets and the locks both on etcd: the lock keys
share the secret store's keyspace (``/services/locks/`` in the namespace) but are no secrets,
so they are neither counted nor re-encrypted, and the rotation adds its new primary key."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from entrypoints.bootstrap import build_container
from entrypoints.settings import load_settings
from tests.api.test_keys_cli import api_token_update
from tests.cli import clean_env, run_cli

pytestmark = pytest.mark.etcd

ORG = "acme"
#: a refresh lease a worker holds during the rotation (long enough to outlast the test)
HELD_LEASE = "refresh:worker-lease"


def _env(etcd_endpoint: tuple[str, int], namespace: str) -> dict[str, str]:
    host, port = etcd_endpoint
    return {
        "CM_SECRETS": "etcd",
        "CM_LOCKS": "etcd",
        "CM_ETCD_ENDPOINT": f"{host}:{port}",
        "CM_ETCD_NAMESPACE": namespace,
    }


async def _seed(data: Path, env: dict[str, str]) -> None:
    """A connector's secret and the API's signing secrets in etcd, and a worker's lease held."""
    container = await build_container(load_settings(env=env, data_dir=data), env={})
    try:
        await container.connectors.update_configuration(ORG, "seeder", "confluence", api_token_update())
        assert await container.infrastructure.lock.acquire(HELD_LEASE, 600) is not None
    finally:
        await container.aclose()


def _keys(data: Path, env: dict[str, str], *args: str) -> Any:
    done = run_cli("keys", *args, "--json", "--data-dir", str(data), env=clean_env(**env))
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_rotate_with_etcd_locks_adds_a_key_and_reencrypts_the_secrets(
    tmp_path: Path, etcd_endpoint: tuple[str, int]
) -> None:
    env = _env(etcd_endpoint, f"/cm-keys-{uuid.uuid4().hex[:10]}")
    data = tmp_path / "data"
    asyncio.run(_seed(data, env))

    status = _keys(data, env, "status")
    assert status["primary"] == "k1"
    assert set(status["sealed"]["secrets"]) == {"k1"}, status["sealed"]  # the lease is no secret
    secrets = status["sealed"]["secrets"]["k1"]
    assert secrets >= 2  # the connector's secret and the API's signing secrets

    plan = _keys(data, env, "rotate", "--dry-run")
    assert plan["resuming"] is False

    done = _keys(data, env, "rotate")
    assert done["primary"] == "k2" and done["damaged"] == 0 and done["notUnderPrimary"] == 0, done
    assert done["reencrypted"] >= secrets
    after = _keys(data, env, "status")
    assert after["keys"] == ["k2", "k1"]
    assert after["sealed"]["secrets"] == {"k2": secrets}

    again = _keys(data, env, "rotate")  # and the next rotation adds the next key
    assert again["primary"] == "k3" and again["damaged"] == 0
