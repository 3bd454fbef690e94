"""The embedding guide's example runs as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
