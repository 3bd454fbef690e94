"""A real ``connector-manager serve`` process: start, call, restart, data still there."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", *args, "--data-dir", str(data_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


class Server:
    """``serve`` on ``data_dir`` and ``port``; its stderr goes with stdout unless ``stderr_apart``
    (then :attr:`stderr` holds it once stopped)."""

    def __init__(self, data_dir: Path, port: int, *, stderr_apart: bool = False) -> None:
        self.data_dir, self.port = data_dir, port
        self.proc: subprocess.Popen[str] | None = None
        self.stderr_apart = stderr_apart
        self.stderr = ""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "entrypoints.cli",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if self.stderr_apart else subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("server did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        self.stderr = err or ""
        return out


def test_serve_keeps_data_across_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    server = Server(data, port)
    server.start()
    try:
        token = cli(
            "token",
            "--org",
            "o1",
            "--user",
            "u1",
            "--email",
            "u1@example.com",
            "--admin",
            data_dir=data,
        ).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        body = {
            "baseUrl": "https://acme.atlassian.net",
            "auth": {
                "authType": "API_TOKEN",
                "email": "a@acme.example",
                "apiToken": "PLANTED-PROCESS-SECRET",
            },
        }
        r = httpx.put(
            f"{server.url}/api/v1/connectors/config/confluence",
            json=body,
            headers=headers,
            timeout=10,
        )
        assert r.status_code == 200, r.text
        r = httpx.post(f"{server.url}/api/v1/connectors/toggle/confluence", headers=headers, timeout=10)
        assert r.json()["connector"]["isEnabled"] is True
    finally:
        log = server.stop()
    assert server.proc is not None and server.proc.returncode == 0, log
    assert "PLANTED-PROCESS-SECRET" not in log
    assert (data / "master.key").stat().st_mode & 0o777 == 0o600
    raw = b"".join(p.read_bytes() for p in data.glob("connector-manager.db*"))
    assert b"PLANTED-PROCESS-SECRET" not in raw

    server = Server(data, port)
    server.start()
    try:
        # a token printed before the restart still works: same secrets
        r = httpx.get(f"{server.url}/api/v1/connectors/active", headers=headers, timeout=10)
        assert [c["key"] for c in r.json()] == ["confluence"]
        r = httpx.get(f"{server.url}/api/v1/connectors/config/confluence", headers=headers, timeout=10)
        assert r.json()["config"]["auth"]["hasApiToken"] is True
        scoped = cli("token", "--scoped", data_dir=data).stdout.strip()
        r = httpx.get(
            f"{server.url}/api/v1/connectors/internal/events",
            headers={"Authorization": f"Bearer {scoped}"},
            timeout=10,
        )
        assert [e["eventType"] for e in r.json()["events"]][-1] == "appEnabled"
    finally:
        server.stop()
