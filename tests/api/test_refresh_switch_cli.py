"""``run_refresher`` is the switch of ``serve`` only: with it off in the settings file every
process shares, ``worker`` still refreshes, and ``serve`` says at start-up that it does not."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.cli import clean_env, start_cli
from tests.due_tokens import provider_toml, seed_due_tokens
from tests.fakes.oauth_provider import FakeOAuthProvider
from tests.servers import free_port

pytestmark = pytest.mark.slow


def shared_settings(path: Path, idp: FakeOAuthProvider) -> Path:
    """The file every process of the deployment reads, as docs/operations.md recommends it."""
    path.write_text("run_refresher = false\nrefresh_interval_seconds = 0.2\n" + provider_toml(idp), encoding="utf-8")
    return path


def start(command: str, config: Path, data_dir: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return start_cli(command, "--config", str(config), "--data-dir", str(data_dir), *extra, env=env)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    return err


@pytest.fixture
def env() -> dict[str, str]:
    return clean_env(CM_MASTER_KEY="switch-" + uuid.uuid4().hex)


async def test_a_worker_refreshes_although_the_shared_file_turns_the_refresher_off(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with FakeOAuthProvider() as idp:
        idp.register_client("cid", "sec")
        config = shared_settings(tmp_path / "cm.toml", idp)
        data_dir = tmp_path / "data"
        await seed_due_tokens(config, data_dir, env, idp, ["org-1"])
        worker = start("worker", config, data_dir, env)
        try:
            deadline = time.monotonic() + 60
            while idp.stats()["refresh_grants"] == 0 and worker.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert idp.stats()["refresh_grants"] == 1
        finally:
            log = stop(worker)
        assert worker.returncode == 0, log
        assert "worker: running outbox pruning, token refresh" in log
        assert "refreshes no tokens" not in log


async def test_serve_with_the_refresher_off_says_so_at_start_up(tmp_path: Path, env: dict[str, str]) -> None:
    with FakeOAuthProvider() as idp:
        config = shared_settings(tmp_path / "cm.toml", idp)
        port = free_port()
        serve = start("serve", config, tmp_path / "data", env, "--port", str(port))
        try:
            deadline = time.monotonic() + 60
            while not healthy(port) and serve.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            log = stop(serve)
        assert serve.returncode == 0, log
        running = [line for line in log.splitlines() if "serve: running" in line]
        assert len(running) == 1 and "token refresh" not in running[0]
        assert "serve: refreshes no tokens here (run_refresher = false); run `connector-manager worker`" in log


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
