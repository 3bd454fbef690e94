"""Processes started together on one fresh data directory end with one keyring and one set of
signing secrets: a token printed by any of them is accepted by every server among them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.cli import clean_env, start_cli
from tests.servers import free_port

pytestmark = pytest.mark.slow

SERVERS = 3
TOKENS = 4


def _wait_healthy(proc: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"serve exited with {proc.returncode}: {err}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not become healthy")


def test_processes_started_together_agree_on_keys_and_secrets(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    ports = [free_port() for _ in range(SERVERS)]
    at = ("--data-dir", str(data))
    token_commands = [
        ("token", "--init", "--org", "org-race", "--user", f"u{n}", "--email", f"u{n}@example.com", "--admin", *at)
        for n in range(TOKENS)
    ]
    serve_commands = [("serve", "--port", str(port), *at) for port in ports]
    # every process is started before any has finished starting: they race for master.key and
    # for the signing secrets in the (equally fresh) database
    order = [c for pair in zip(serve_commands, token_commands, strict=False) for c in pair]
    order += token_commands[SERVERS:]
    procs = [start_cli(*command, env=clean_env()) for command in order]
    servers = [p for p, c in zip(procs, order, strict=True) if c in serve_commands]
    printers = [p for p, c in zip(procs, order, strict=True) if c in token_commands]
    try:
        tokens = []
        for proc in printers:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            tokens.append(out.strip().splitlines()[-1])
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for proc, url in zip(servers, urls, strict=True):
            _wait_healthy(proc, url)
        for url in urls:
            for token in tokens:
                r = httpx.get(f"{url}/api/v1/connectors/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
                assert r.status_code == 200, (url, r.text)
    finally:
        for proc in servers:
            proc.terminate()
        for proc in servers:
            proc.communicate(timeout=30)
    assert (data / "master.key").read_text(encoding="utf-8").strip()
    assert [p.name for p in data.iterdir() if p.name.startswith(".master.key")] == []  # no draft left behind
