"""A real ``connector-manager serve`` process with a custom OpenID provider on the fake OAuth
provider, and one headless Chromium for the whole module."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from attrs import frozen

from tests.browser.chromium import Browser, quit_chromium, start_chromium
from tests.cli import ROOT, clean_env, command, run_cli
from tests.fakes.oauth_provider import FakeOAuthProvider
from tests.servers import free_port

ORG = "acme"
PROVIDER = "fakeIdp"
CLIENT_ID, CLIENT_SECRET = "console-client", "console-client-secret-PLANTED"


def settings_toml(idp: FakeOAuthProvider, port: int) -> str:
    """The service's port (the CLI's links point there too) and a custom OpenID Connect
    provider found through its discovery document."""
    return f"""
port = {port}
run_refresher = false

[[providers]]
key = "{PROVIDER}"
displayName = "Fake OpenID"
apps = ["FAKE"]
tokenServiceType = "FAKE"

[providers.oauth]
discoveryUrl = "{idp.discovery_url}"
defaultScopes = ["openid", "email", "offline_access", "files.read"]

[providers.oauth.scopeApps]
"files.read" = "FAKE"
"""


@frozen
class Service:
    url: str
    data_dir: Path
    config: Path

    def cli(self, *args: str) -> str:
        done = run_cli(*args, "--config", str(self.config), "--data-dir", str(self.data_dir))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def admin_url(self, org: str = ORG, user: str = "alice") -> str:
        return self.cli("admin-url", "--org", org, "--user", user, "--email", f"{user}@acme.example")

    def user_token(self, user: str, *, admin: bool) -> str:
        flags = ["--admin"] if admin else []
        return self.cli("token", "--org", ORG, "--user", user, "--email", f"{user}@acme.example", *flags)

    def scoped_token(self) -> str:
        return self.cli("token", "--scoped", "--org", ORG)


@pytest.fixture(scope="module")
def service(idp: FakeOAuthProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("console")
    config = root / "settings.toml"
    data_dir, port = root / "data", free_port()
    config.write_text(settings_toml(idp, port), encoding="utf-8")
    log = (root / "serve.log").open("w", encoding="utf-8")
    proc = subprocess.Popen(
        command("serve", "--config", str(config), "--data-dir", str(data_dir)),
        cwd=ROOT,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield Service(url, data_dir, config)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve did not become healthy")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield Browser(driver)
    finally:
        quit_chromium(driver)
