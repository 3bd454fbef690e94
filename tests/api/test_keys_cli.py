"""``connector-manager keys status|rotate`` on a real data dir, with ``serve`` running: every
secret, all token material and every OAuth state end up under the new key, the running server
follows the new key file, and a rotation cut short is finished by the next run."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.crypto import Aead, KeyFile, Keyring
from adapters.system import SystemClock
from connector_core.ports.oauth_state import PendingAuthorization
from connector_core.services.connectors import ConfigUpdate
from connector_core.services.credentials import stored_credentials
from entrypoints.bootstrap import build_container
from entrypoints.cli.rotation_lock import ROTATION_LOCK
from entrypoints.infrastructure import open_infrastructure
from entrypoints.settings import load_settings
from tests.builders import token_record
from tests.cli import clean_env, run_cli, start_cli
from tests.servers import free_port

pytestmark = pytest.mark.slow

ORG = "acme"


def api_token_update() -> ConfigUpdate:
    """A Confluence configuration with an API token: one secret in the secret store."""
    return ConfigUpdate(
        base_url="https://acme.atlassian.net",
        auth={"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": "PLANTED-API-TOKEN"},
        sync={},
        filters={},
    )


async def seed(data: Path) -> None:
    """An enabled API-token connector (a secret), a token record (material) and a pending OAuth
    state, all sealed with the data dir's first key."""
    container = await build_container(load_settings(env={}, data_dir=data), env={})
    try:
        await container.connectors.update_configuration(ORG, "seeder", "confluence", api_token_update())
        await container.connectors.set_enabled(ORG, "seeder", "confluence", True)
        record = token_record(ORG, container.ctx.clock.now(), refresh="PLANTED-REFRESH")
        async with container.ctx.uow() as uow:
            await uow.tokens.add(record)
            await uow.commit()
        await container.storage.states.put(
            PendingAuthorization(
                state_hash="state-1",
                org_id=ORG,
                user_id="alice",
                connector_key="googleWorkspace",
                redirect_uri="http://localhost:3000/cb",
                expires_at=container.ctx.clock.now() + timedelta(minutes=10),
                code_verifier="PLANTED-VERIFIER",
            )
        )
    finally:
        await container.aclose()


async def read_everything(data: Path, ring: Keyring) -> tuple[str | None, str | None, str | None]:
    """The token's refresh token, the state's verifier and the connector's API token, read with ``ring``."""
    settings = load_settings(env={}, data_dir=data)
    infra = await open_infrastructure(settings, Aead(ring), SystemClock())
    try:
        container = await build_container(settings, env={}, infrastructure=infra)
        async with container.ctx.uow() as uow:
            record = await uow.tokens.get_for_connector(ORG, "googleWorkspace")
        state = await container.storage.states.take("state-1")
        creds = await stored_credentials(container.ctx, ORG, "confluence")
        return (
            record.tokens.refresh_token if record else None,
            state.code_verifier if state else None,
            creds.fields.get("apiToken"),
        )
    finally:
        await infra.aclose()


def keys(data: Path, *args: str) -> Any:
    done = run_cli("keys", *args, "--json", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    assert run_cli("token", "--init", "--scoped", "--data-dir", str(data)).returncode == 0
    asyncio.run(seed(data))
    return data


def test_rotation_reencrypts_everything_while_serve_runs_and_serve_follows(data: Path) -> None:
    key_file = data / "master.key"
    before = key_file.read_bytes()
    status = keys(data, "status")
    assert status["primary"] == "k1" and status["keys"] == ["k1"]
    assert status["sealed"]["tokens"] == {"k1": 1} and status["sealed"]["oauthStates"] == {"k1": 1}
    assert status["sealed"]["secrets"]["k1"] >= 2  # the connector's secret and the API's signing secrets
    total = sum(n for by_key in status["sealed"].values() for n in by_key.values())

    port = free_port()
    server = start_cli("serve", "--data-dir", str(data), "--port", str(port), env=clean_env(), merge_stderr=True)
    try:
        assert run_cli("wait", "--port", str(port), "--pid", str(server.pid)).returncode == 0

        plan = keys(data, "rotate", "--dry-run")
        assert plan["resuming"] is False and plan["valuesToReencrypt"] == total
        assert key_file.read_bytes() == before  # a dry run changes nothing

        done = keys(data, "rotate")
        assert done["primary"] == "k2" and done["reencrypted"] == total and done["notUnderPrimary"] == 0
        after = keys(data, "status")
        assert after["keys"] == ["k2", "k1"]
        assert all(set(by_key) == {"k2"} for by_key in after["sealed"].values()), after["sealed"]

        # the running server follows the new key file: it reads the re-encrypted secret and seals
        # what it writes with the new key
        scoped = run_cli("token", "--scoped", "--org", ORG, "--data-dir", str(data)).stdout.strip()
        url = f"http://127.0.0.1:{port}/api/v1/connectors/internal/credentials/confluence"
        answer = httpx.get(url, headers={"Authorization": f"Bearer {scoped}"}, timeout=10)
        assert answer.status_code == 200 and answer.json()["apiToken"] == "PLANTED-API-TOKEN"
        admin = run_cli(
            "token", "--org", ORG, "--user", "alice", "--email", "a@acme.example", "--admin", "--data-dir", str(data)
        ).stdout.strip()
        body = {"baseUrl": "https://acme.atlassian.net", "auth": {"email": "ops@acme.example", "apiToken": "NEW"}}
        saved = httpx.put(
            f"http://127.0.0.1:{port}/api/v1/connectors/config/confluence",
            json=body,
            headers={"Authorization": f"Bearer {admin}"},
            timeout=10,
        )
        assert saved.status_code == 200, saved.text
        assert set(keys(data, "status")["sealed"]["secrets"]) == {"k2"}
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)

    # the old key can go: everything reads with the new key alone
    only_new = Keyring.parse(KeyFile(key_file).current().to_spec().split(",")[0])
    assert only_new.key_ids == ("k2",)
    assert asyncio.run(read_everything(data, only_new)) == ("PLANTED-REFRESH", "PLANTED-VERIFIER", "NEW")


def test_a_rotation_cut_short_after_the_new_key_is_finished_by_the_next_run(data: Path) -> None:
    KeyFile(data / "master.key").rotate()  # the crash: the new key is written, nothing re-encrypted yet
    plan = keys(data, "rotate", "--dry-run")
    assert plan["resuming"] is True and plan["from"] == "k2"
    total = plan["valuesToReencrypt"]
    assert total >= 4
    done = keys(data, "rotate")
    assert done["primary"] == "k2" and done["reencrypted"] == total and done["notUnderPrimary"] == 0
    assert keys(data, "status")["keys"] == ["k2", "k1"]  # finished, not rotated again
    again = keys(data, "rotate", "--dry-run")  # now a new rotation would start
    assert again["resuming"] is False


def _damage(envelope: str) -> str:
    """The same envelope with one ciphertext character changed: well-formed, not decryptable."""
    version, key_id, nonce, sealed = envelope.split(":")
    return ":".join([version, key_id, nonce, ("B" if sealed[0] != "B" else "C") + sealed[1:]])


def test_a_value_that_cannot_be_decrypted_is_named_left_as_it_was_and_the_rest_is_rotated(data: Path) -> None:
    db = sqlite3.connect(data / "connector-manager.db")
    try:
        secret_key, secret = db.execute("SELECT key, value FROM kv WHERE key LIKE '%confluence%' LIMIT 1").fetchone()
        token_id, material = db.execute("SELECT id, material FROM tokens").fetchone()
        damaged = {secret_key: _damage(secret), f"/tokens/{token_id}": _damage(material)}
        db.execute("UPDATE kv SET value=? WHERE key=?", (damaged[secret_key], secret_key))
        db.execute("UPDATE tokens SET material=? WHERE id=?", (damaged[f"/tokens/{token_id}"], token_id))
        (state,) = db.execute("SELECT sealed FROM oauth_states").fetchone()
        damaged["/oauth-state/state-1"] = _damage(state)
        db.execute("UPDATE oauth_states SET sealed=?", (damaged["/oauth-state/state-1"],))
        db.commit()
    finally:
        db.close()
    total = sum(n for by_key in keys(data, "status")["sealed"].values() for n in by_key.values())

    done = run_cli("keys", "rotate", "--json", "--data-dir", str(data))
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["damaged"] == 3, report
    assert report["damagedPaths"] == sorted(damaged)
    assert report["reencrypted"] == total - 3 and report["notUnderPrimary"] == 0
    shown = done.stdout + done.stderr
    assert all(value not in shown for value in damaged.values())

    text = run_cli("keys", "rotate", "--data-dir", str(data))  # again, in words: named again, nothing lost
    assert text.returncode == 1
    assert "3 values could not be decrypted" in text.stdout and all(path in text.stdout for path in damaged)

    db = sqlite3.connect(data / "connector-manager.db")
    try:  # left exactly as they were
        assert db.execute("SELECT value FROM kv WHERE key=?", (secret_key,)).fetchone()[0] == damaged[secret_key]
        assert db.execute("SELECT material FROM tokens").fetchone()[0] == damaged[f"/tokens/{token_id}"]
        assert db.execute("SELECT sealed FROM oauth_states").fetchone()[0] == damaged["/oauth-state/state-1"]
    finally:
        db.close()
    sealed = keys(data, "status")["sealed"]
    assert sum(n for key, n in sealed["secrets"].items() if key != "k2") == 1  # only the damaged secret


async def _hold_rotation_lock(data: Path) -> None:
    container = await build_container(load_settings(env={}, data_dir=data), env={})
    try:
        assert await container.infrastructure.lock.acquire(ROTATION_LOCK, 600) is not None
    finally:
        await container.aclose()


def test_a_second_rotation_while_one_runs_is_refused(data: Path) -> None:
    key_file = data / "master.key"
    before = key_file.read_bytes()
    asyncio.run(_hold_rotation_lock(data))  # a rotation in another process holds the lock
    done = run_cli("keys", "rotate", "--data-dir", str(data))
    assert done.returncode == 2
    assert "another `keys rotate` is running" in done.stderr
    assert key_file.read_bytes() == before  # no key added, nothing re-encrypted
    assert set(keys(data, "status")["sealed"]["secrets"]) == {"k1"}
    assert keys(data, "rotate", "--dry-run")["resuming"] is False  # a dry run changes nothing: no lock needed


def test_a_value_in_no_encrypted_format_does_not_make_a_rotation_look_unfinished(data: Path) -> None:
    db = sqlite3.connect(data / "connector-manager.db")
    try:  # a plain value in the secret store (not ours, or damaged beyond the envelope's shape)
        db.execute("INSERT INTO kv (key, value, revision) VALUES (?, ?, 1)", ("/services/foreign/plain", "PLAIN"))
        db.commit()
    finally:
        db.close()
    status = keys(data, "status")
    assert status["sealed"]["secrets"]["unreadable"] == 1 and status["notUnderPrimary"] == 0
    assert keys(data, "rotate", "--dry-run")["resuming"] is False

    for primary in ("k2", "k3"):  # each run adds a key: the plain value is named, never "resumed"
        done = run_cli("keys", "rotate", "--json", "--data-dir", str(data))
        assert done.returncode == 1, done.stderr
        report = json.loads(done.stdout)
        assert report["primary"] == primary and report["resuming"] is False, report
        assert report["damagedPaths"] == ["/services/foreign/plain"] and report["notUnderPrimary"] == 0
        assert "PLAIN" not in done.stdout + done.stderr


def test_moving_from_cm_master_key_to_cm_encryption_keys_then_rotating(tmp_path: Path) -> None:
    data = tmp_path / "data"
    master = clean_env(CM_MASTER_KEY="PLANTED-SHORT-MASTER")  # short: accepted, with a warning at start-up
    assert run_cli("token", "--init", "--scoped", "--data-dir", str(data), env=master).returncode == 0
    assert not (data / "master.key").exists()

    port = free_port()
    server = start_cli("serve", "--data-dir", str(data), "--port", str(port), env=master, merge_stderr=True)
    try:
        assert run_cli("wait", "--port", str(port), "--pid", str(server.pid)).returncode == 0
    finally:
        server.send_signal(signal.SIGTERM)
        logged, _ = server.communicate(timeout=30)
    assert "CM_MASTER_KEY is shorter than 32 characters" in logged and "PLANTED-SHORT-MASTER" not in logged

    refused = run_cli("keys", "export", "--data-dir", str(data), env=master)  # not without asking
    assert refused.returncode == 2 and refused.stdout == "" and "--print-keys" in refused.stderr

    exported = run_cli("keys", "export", "--print-keys", "--data-dir", str(data), env=master)
    assert exported.returncode == 0, exported.stderr
    spec = exported.stdout.strip()
    assert spec == Keyring.from_master_secret("PLANTED-SHORT-MASTER").to_spec()  # k1, the same key
    assert "key material" in exported.stderr and spec not in exported.stderr
    assert "PLANTED-SHORT-MASTER" not in exported.stdout + exported.stderr

    new = Keyring.generate("k2").to_spec()  # a new key first, every process restarted with it
    moved = clean_env(CM_ENCRYPTION_KEYS=f"{new},{spec}")
    done = run_cli("keys", "rotate", "--json", "--data-dir", str(data), env=moved)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["resuming"] is True and report["primary"] == "k2" and report["notUnderPrimary"] == 0
    assert report["reencrypted"] >= 1
    alone = run_cli("keys", "status", "--json", "--data-dir", str(data), env=clean_env(CM_ENCRYPTION_KEYS=new))
    assert alone.returncode == 0, alone.stderr
    assert all(set(by_key) == {"k2"} for by_key in json.loads(alone.stdout)["sealed"].values())


def test_keys_export_never_creates_a_key_file(tmp_path: Path) -> None:
    data = tmp_path / "never-initialised"
    done = run_cli("keys", "export", "--print-keys", "--data-dir", str(data))
    assert done.returncode == 2 and done.stdout == "" and "never initialised" in done.stderr
    assert not (data / "master.key").exists()
