"""The embedding guide's example runs as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def test_embedding_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, "examples/embed.py"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "refused: Jira cannot be enabled: missing auth.clientId, auth.clientSecret" in out
    assert "jira enabled: True apps: ['JIRA']" in out
    assert "event: appEnabled acme:jira" in out
    assert "example-token" not in out


def test_sample_production_settings_load() -> None:
    from entrypoints.settings import load_settings

    settings = load_settings(ROOT / "examples" / "settings" / "production.toml", env={})
    assert (settings.storage, settings.secrets, settings.events, settings.cache, settings.locks) == (
        "mongo",
        "etcd",
        "kafka",
        "redis",
        "redis",
    )
    assert settings.oauth_allowed_origins == ("https://app.example.com",)
    assert settings.refresh_batch_size == 200 and settings.port == 8088 and settings.host == "0.0.0.0"
    assert settings.run_refresher is False


def test_sample_cluster_settings_load_with_every_member() -> None:
    """The samples of operations.md's "Running on clusters", one per backend."""
    from entrypoints.settings import load_settings

    def load(name: str) -> Any:
        return load_settings(ROOT / "examples" / "settings" / f"cluster-{name}.toml", env={})

    mongo = load("mongo").mongo
    assert "replicaSet=rs0" in mongo.url and mongo.url.count(":27017") == 3

    etcd = load("etcd")
    assert etcd.secrets == etcd.locks == "etcd"
    assert [host for host, _ in etcd.etcd.endpoints] == [f"etcd-{i}.internal.example" for i in range(3)]
    assert etcd.etcd.tls is not None and etcd.etcd.tls.ca_file == Path("/etc/connector-manager/etcd-ca.pem")

    redis = load("redis")
    assert redis.cache == redis.locks == "redis"
    assert len(redis.redis.sentinels) == 3 and redis.redis.sentinel_master == "connector-manager"
    assert redis.redis.replica_acks == 1

    kafka = load("kafka").kafka
    assert kafka.bootstrap.count(",") == 2
    assert (kafka.replication_factor, kafka.min_insync_replicas) == (3, 2)
    assert dict(kafka.client_config)["security.protocol"] == "SASL_SSL"


def test_operations_shows_every_sample_cluster_settings_file() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for name in ("mongo", "etcd", "redis", "kafka"):
        sample = (ROOT / "examples" / "settings" / f"cluster-{name}.toml").read_text(encoding="utf-8")
        assert sample.strip() in operations, name  # the doc shows the file as it is
