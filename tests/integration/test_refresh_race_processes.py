"""Four ``connector-manager worker`` processes on one store (a SQLite file; MongoDB + etcd + Redis)
refresh 200 due tokens of a provider that rotates refresh tokens: each refreshed exactly once,
none lost, no invalid_grant."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from connector_core.services.connectors import ConfigUpdate
from connector_core.tokens import TokenRecord, TokenSet
from entrypoints.bootstrap import build_container
from entrypoints.settings import load_settings
from tests.fakes.oauth_provider import FakeOAuthProvider

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOKENS = 200
WORKERS = 4


def settings_file(path: Path, idp: FakeOAuthProvider, backend: str = "") -> Path:
    path.write_text(
        backend
        + f"""
refresh_batch_size = 500
refresh_concurrency = 16
run_refresher = true

[[providers]]
key = "fakeIdp"
displayName = "Fake IdP"
apps = ["FAKE"]
tokenServiceType = "FAKE"

[providers.oauth]
authorizeUrl = "{idp.authorize_url}"
tokenUrl = "{idp.token_url}"
revocationUrl = "{idp.revocation_url}"
defaultScopes = ["offline_access", "files.read"]

[providers.oauth.scopeApps]
"files.read" = "FAKE"
""",
        encoding="utf-8",
    )
    return path


async def seed(config: Path, data_dir: Path, env: dict[str, str], idp: FakeOAuthProvider) -> list[str]:
    settings = load_settings(config, env=env, data_dir=data_dir)
    container = await build_container(settings, env=env)
    ctx = container.ctx
    entry = container.catalog.get("fakeIdp")
    lineages: list[str] = []
    try:
        for n in range(TOKENS):
            org = f"org-{n:03d}"
            update = ConfigUpdate(
                base_url="http://localhost:3000",
                auth={"clientId": "cid-race", "clientSecret": "race-secret"},
                sync={},
                filters={},
            )
            await container.connectors.update_configuration(org, "seeder", "fakeIdp", update)
            refresh = idp.mint_refresh_token("cid-race", ["offline_access", "files.read"])
            lineages.append(refresh)
            now = ctx.clock.now()
            tokens = TokenSet(
                access_token=f"stale-{n}",
                obtained_at=now - timedelta(hours=1),
                refresh_token=refresh,
                expires_at=now + timedelta(seconds=60),
                scopes=frozenset({"offline_access", "files.read"}),
            )
            async with ctx.uow() as uow:
                connector = await uow.connectors.get(org, "fakeIdp")
                assert connector is not None
                connector.record_authorization(entry, ["FAKE"], by="seeder", now=now, ids=ctx.ids)
                record = TokenRecord.create(
                    token_id=ctx.ids.new_id(),
                    org_id=org,
                    connector_key="fakeIdp",
                    account_id="seeder",
                    service_type="FAKE",
                    tokens=tokens,
                    lifecycle=ctx.lifecycle,
                    now=now,
                    ids=ctx.ids,
                )
                await uow.connectors.save(connector)
                await uow.tokens.add(record)
                await uow.commit()
    finally:
        await container.aclose()
    return lineages


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("mongo", marks=[pytest.mark.mongo, pytest.mark.etcd, pytest.mark.redis]),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    """The store the workers share: one SQLite file, or MongoDB + etcd + Redis leases."""
    if request.param == "sqlite":
        return ""
    mongo_url = request.getfixturevalue("mongo_url")
    host, port = request.getfixturevalue("etcd_endpoint")
    redis_url = request.getfixturevalue("redis_url")
    return (
        f'storage = "mongo"\nmongo_url = "{mongo_url}"\nmongo_database = "race_{uuid.uuid4().hex[:8]}"\n'
        f'secrets = "etcd"\netcd_endpoint = "{host}:{port}"\netcd_namespace = "/race-{uuid.uuid4().hex[:8]}"\n'
        f'locks = "redis"\nredis_url = "{redis_url}"\n'
    )


async def test_four_worker_processes_refresh_each_token_once(tmp_path: Path, backend: str) -> None:
    with FakeOAuthProvider(rotate_refresh_tokens=True) as idp:
        idp.register_client("cid-race", "race-secret")
        data_dir = tmp_path / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
        env["CM_MASTER_KEY"] = "race-" + uuid.uuid4().hex
        config = settings_file(tmp_path / "cm.toml", idp, backend)
        await seed(config, data_dir, env, idp)
        assert idp.stats()["refresh_grants"] == 0

        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "entrypoints.cli",
                    "worker",
                    "--once",
                    "--config",
                    str(config),
                    "--data-dir",
                    str(data_dir),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(WORKERS)
        ]
        outputs = [p.communicate(timeout=300)[0] for p in procs]
        assert [p.returncode for p in procs] == [0] * WORKERS, outputs

        stats = idp.stats()
        per_lineage = stats["refreshes_by_lineage"]
        assert len(per_lineage) == TOKENS
        assert sorted(set(per_lineage.values())) == [1], per_lineage
        assert stats["refresh_grants"] == TOKENS
        assert stats["invalid_grant"] == 0

        # every stored refresh token is the rotated, live one; every access token is fresh
        settings = load_settings(config, env=env, data_dir=data_dir)
        container = await build_container(settings, env=env)
        try:
            for n in range(TOKENS):
                async with container.ctx.uow() as uow:
                    record = await uow.tokens.get_for_connector(f"org-{n:03d}", "fakeIdp")
                assert record is not None and record.version == 2
                assert record.tokens.refresh_token and idp.is_refresh_token_valid(record.tokens.refresh_token)
                assert idp.is_access_token_valid(record.tokens.access_token)
            events = await container.storage.outbox.recent(5000)
            refreshed = [m for m in events if m.event.event_type == "TOKEN_REFRESHED"]
            assert len(refreshed) == TOKENS
        finally:
            await container.aclose()
        for out in outputs:
            assert "race-secret" not in out
