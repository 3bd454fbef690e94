"""Start-up keys: the key file appears whole or not at all, and a process only ever uses the
signing secrets that are stored."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from adapters.crypto import Keyring
from adapters.memory import MemoryKeyValueStore
from connector_core.errors import Unavailable
from connector_core.ports.kv_store import Versioned
from entrypoints.service_secrets import (
    SECRET_KEYS_PATH,
    load_keyring,
    load_service_secrets,
    read_or_create_secret_file,
    warn_if_short_master_key,
)
from entrypoints.settings import load_settings


def test_a_reader_during_creation_never_sees_a_half_written_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    seen: list[str] = []

    def make_while_another_process_starts() -> str:
        # another process starts while this one is creating the file
        seen.append(read_or_create_secret_file(path, lambda: "second-process-key"))
        return "first-process-key"

    mine = read_or_create_secret_file(path, make_while_another_process_starts)
    assert seen == [mine]
    assert mine in {"first-process-key", "second-process-key"}
    assert path.read_text(encoding="utf-8").strip() == mine
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["master.key"]  # no draft left behind


def test_an_existing_key_file_is_read_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    first = read_or_create_secret_file(path, lambda: "k1")
    assert read_or_create_secret_file(path, lambda: "k2") == first == "k1"


class LaggingReads(MemoryKeyValueStore):
    """A store whose first ``lag`` reads miss what another process has already stored (a read
    that raced that process's write)."""

    def __init__(self, lag: int) -> None:
        super().__init__()
        self.lag = lag

    async def get(self, key: str) -> Versioned | None:
        if self.lag > 0:
            self.lag -= 1
            return None
        return await super().get(key)


async def _stored_by_another_process(store: MemoryKeyValueStore) -> dict[str, str]:
    theirs = {"jwtSecret": "their-jwt", "scopedJwtSecret": "their-scoped", "cookieSecret": "their-cookie"}
    await store.put(SECRET_KEYS_PATH, json.dumps(theirs), expected_revision=0)
    return theirs


@pytest.mark.parametrize("lost_rounds", [0, 1, 3, 4])
async def test_a_process_that_loses_the_race_uses_the_winners_secrets(lost_rounds: int) -> None:
    store = LaggingReads(lag=lost_rounds)
    theirs = await _stored_by_another_process(store)
    secrets = await load_service_secrets(store, {})
    assert (secrets.jwt_secret, secrets.scoped_jwt_secret, secrets.cookie_secret) == (
        theirs["jwtSecret"],
        theirs["scopedJwtSecret"],
        theirs["cookieSecret"],
    )


async def test_secrets_that_cannot_be_agreed_on_stop_start_up_instead_of_being_made_up() -> None:
    store = LaggingReads(lag=100)
    await _stored_by_another_process(store)
    with pytest.raises(Unavailable, match="secretKeys"):
        await load_service_secrets(store, {})


async def test_the_first_process_stores_what_it_uses() -> None:
    store = MemoryKeyValueStore()
    secrets = await load_service_secrets(store, {})
    found = await store.get(SECRET_KEYS_PATH)
    assert found is not None
    assert json.loads(found.value)["jwtSecret"] == secrets.jwt_secret
    assert (await load_service_secrets(store, {})).scoped_jwt_secret == secrets.scoped_jwt_secret


@pytest.mark.parametrize(
    ("env", "warned"),
    [
        ({"CM_MASTER_KEY": "short-passphrase"}, True),
        ({"CM_MASTER_KEY": "x" * 32}, False),
        ({"CM_MASTER_KEY": "short-passphrase", "CM_ENCRYPTION_KEYS": Keyring.generate().to_spec()}, False),
        ({}, False),
    ],
)
def test_a_short_master_key_is_used_with_a_start_up_warning_that_never_shows_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, env: dict[str, str], warned: bool
) -> None:
    settings = load_settings(env={}, data_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        warn_if_short_master_key(env)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert bool(warnings) is warned
    if warned:
        assert "CM_MASTER_KEY is shorter than 32 characters" in warnings[0] and "CM_ENCRYPTION_KEYS" in warnings[0]
    assert "short-passphrase" not in caplog.text
    if env.get("CM_MASTER_KEY"):
        ring = load_keyring(settings, env)
        assert isinstance(ring, Keyring) and ring.key_ids == ("k1",)  # accepted either way
