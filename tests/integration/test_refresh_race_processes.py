"""Four ``connector-manager worker`` processes on one store (a SQLite file; MongoDB + etcd + Redis)
refresh 200 due tokens of a provider that rotates refresh tokens: each refreshed exactly once,
none lost, no invalid_grant."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from entrypoints.bootstrap import build_container
from entrypoints.settings import load_settings
from tests.cli import clean_env, start_cli
from tests.due_tokens import provider_toml, seed_due_tokens
from tests.fakes.oauth_provider import FakeOAuthProvider

pytestmark = pytest.mark.slow
TOKENS = 200
WORKERS = 4


def settings_file(path: Path, idp: FakeOAuthProvider, backend: str = "") -> Path:
    settings = "refresh_batch_size = 500\nrefresh_concurrency = 16\nrun_refresher = true\n"
    path.write_text(backend + settings + provider_toml(idp), encoding="utf-8")
    return path


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
        env = clean_env(CM_MASTER_KEY="race-" + uuid.uuid4().hex)
        config = settings_file(tmp_path / "cm.toml", idp, backend)
        orgs = [f"org-{n:03d}" for n in range(TOKENS)]
        await seed_due_tokens(config, data_dir, env, idp, orgs, client=("cid-race", "race-secret"))
        assert idp.stats()["refresh_grants"] == 0

        worker = ("worker", "--once", "--config", str(config), "--data-dir", str(data_dir))
        procs = [start_cli(*worker, env=env, merge_stderr=True) for _ in range(WORKERS)]
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
