"""``connector-manager keys status|rotate`` and token material sealed before it named its org and
connector (bound to its record id only): status counts those records, rotation binds each to the
org and connector its record names, and a record whose org does not match its metadata is named
as damaged and left exactly as it was."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from adapters.crypto import Aead, KeyFile
from adapters.sealing import TOKEN_BINDING, token_path
from adapters.system import SystemClock
from connector_core.errors import UnreadableRecord
from entrypoints.bootstrap import build_container
from entrypoints.infrastructure import open_infrastructure
from entrypoints.settings import load_settings
from tests.api.test_keys_cli import ORG, keys, seed
from tests.builders import token_record
from tests.cli import run_cli

pytestmark = pytest.mark.slow

#: the record whose org column was changed alone (its metadata and material name ORG)
MISMATCHED = "t-mismatched"


async def add_token(data: Path) -> None:
    container = await build_container(load_settings(env={}, data_dir=data), env={})
    try:
        async with container.ctx.uow() as uow:
            await uow.tokens.add(token_record(ORG, container.ctx.clock.now(), key="onedrive", token_id=MISMATCHED))
            await uow.commit()
    finally:
        await container.aclose()


def unbind(data: Path, db: sqlite3.Connection, token_id: str) -> None:
    """The record's material as a release before 2026-12-04 sealed it: naming no org or connector."""
    aead, path = Aead(KeyFile(data / "master.key").current()), token_path(token_id)
    (material,) = db.execute("SELECT material FROM tokens WHERE id=?", (token_id,)).fetchone()
    secret = {k: v for k, v in json.loads(aead.open(material, path=path)).items() if k not in TOKEN_BINDING}
    db.execute("UPDATE tokens SET material=? WHERE id=?", (aead.seal(json.dumps(secret).encode(), path=path), token_id))


async def read_as(data: Path, org_id: str) -> str | None:
    """The refresh token of the googleWorkspace token found for ``org_id``."""
    settings = load_settings(env={}, data_dir=data)
    infra = await open_infrastructure(settings, Aead(KeyFile(data / "master.key")), SystemClock())
    try:
        container = await build_container(settings, env={}, infrastructure=infra)
        async with container.ctx.uow() as uow:
            record = await uow.tokens.get_for_connector(org_id, "googleWorkspace")
        return record.tokens.refresh_token if record else None
    finally:
        await infra.aclose()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data dir whose two token records are bound to their record id only; one of them
    (``MISMATCHED``) has its org column changed alone."""
    data = tmp_path / "data"
    assert run_cli("token", "--init", "--scoped", "--data-dir", str(data)).returncode == 0
    asyncio.run(seed(data))
    asyncio.run(add_token(data))
    db = sqlite3.connect(data / "connector-manager.db")
    try:
        for (token_id,) in db.execute("SELECT id FROM tokens").fetchall():
            unbind(data, db, token_id)
        db.execute("UPDATE tokens SET org_id='other-org' WHERE id=?", (MISMATCHED,))
        db.commit()
    finally:
        db.close()
    return data


def test_rotation_binds_tokens_sealed_before_they_named_their_org(data: Path) -> None:
    status = keys(data, "status")
    assert status["tokenBindings"] == {"recordIdOnly": 2} and status["tokensBoundToIdOnly"] == 2
    assert "2 token records were sealed before" in run_cli("keys", "status", "--data-dir", str(data)).stdout
    assert asyncio.run(read_as(data, ORG)) == "PLANTED-REFRESH"
    assert keys(data, "rotate", "--dry-run")["tokensToBind"] == 2

    done = run_cli("keys", "rotate", "--json", "--data-dir", str(data))
    assert done.returncode == 1, done.stderr  # the mismatched record is named
    report = json.loads(done.stdout)
    assert report["damagedPaths"] == [f"/tokens/{MISMATCHED}"] and report["notUnderPrimary"] == 0
    assert report["tokensBoundToIdOnly"] == 1  # that one alone
    after = keys(data, "status")
    assert after["tokenBindings"] == {"orgAndConnector": 1, "recordIdOnly": 1}
    assert asyncio.run(read_as(data, ORG)) == "PLANTED-REFRESH"  # still its org's token

    # bound now: moved to another org (its columns and metadata), it no longer opens there
    db = sqlite3.connect(data / "connector-manager.db")
    try:
        db.execute(
            "UPDATE tokens SET org_id='intruder', meta=json_set(meta, '$.org_id', 'intruder')"
            " WHERE connector_key='googleWorkspace'"
        )
        db.commit()
    finally:
        db.close()
    with pytest.raises(UnreadableRecord):
        asyncio.run(read_as(data, "intruder"))


def test_a_record_whose_org_does_not_match_is_named_and_left_as_it_was(data: Path) -> None:
    db = sqlite3.connect(data / "connector-manager.db")
    try:
        (before,) = db.execute("SELECT material FROM tokens WHERE id=?", (MISMATCHED,)).fetchone()
    finally:
        db.close()

    done = run_cli("keys", "rotate", "--data-dir", str(data))
    assert done.returncode == 1, done.stderr
    assert f"/tokens/{MISMATCHED}" in done.stdout and "left as they were" in done.stdout
    assert "refresh-secret-value" not in done.stdout + done.stderr

    db = sqlite3.connect(data / "connector-manager.db")
    try:
        (after,) = db.execute("SELECT material FROM tokens WHERE id=?", (MISMATCHED,)).fetchone()
    finally:
        db.close()
    assert after == before  # not re-encrypted, not bound to the org its column names
    assert keys(data, "status")["sealed"]["tokens"] == {"k1": 1, "k2": 1}
