"""A ``connector-manager worker`` told to stop (SIGTERM) in the middle of a refresh round: the
calls in flight end and their rotated tokens are stored, no further provider call starts, and
no token is lost (each stored refresh token is the provider's live one)."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest

from entrypoints.bootstrap import build_container
from entrypoints.settings import load_settings
from tests.cli import clean_env, start_cli
from tests.due_tokens import provider_toml, seed_due_tokens
from tests.fakes.oauth_provider import FakeOAuthProvider

pytestmark = [pytest.mark.slow, pytest.mark.sqlite]
TOKENS = 12
CONCURRENCY = 2


async def test_a_stopped_worker_finishes_its_calls_in_flight_and_starts_no_more(tmp_path: Path) -> None:
    with FakeOAuthProvider(rotate_refresh_tokens=True) as idp:
        idp.register_client("cid-stop", "stop-secret")
        data_dir = tmp_path / "data"
        env = clean_env(CM_MASTER_KEY="stop-" + uuid.uuid4().hex)
        config = tmp_path / "cm.toml"
        settings = f"refresh_batch_size = 100\nrefresh_concurrency = {CONCURRENCY}\nrun_refresher = true\n"
        config.write_text(settings + provider_toml(idp), encoding="utf-8")
        orgs = [f"org-{n:02d}" for n in range(TOKENS)]
        await seed_due_tokens(config, data_dir, env, idp, orgs, client=("cid-stop", "stop-secret"))
        idp.set_fault("slow", delay=1.0)  # each refresh grant answers after a second

        worker = start_cli("worker", "--config", str(config), "--data-dir", str(data_dir), env=env, merge_stderr=True)
        try:
            deadline = time.monotonic() + 30
            while idp.stats()["token_requests"] < 1:
                assert worker.poll() is None, worker.communicate()[0]
                assert time.monotonic() < deadline, "the worker never called the provider"
                time.sleep(0.05)
            worker.send_signal(signal.SIGTERM)
            output = worker.communicate(timeout=30)[0]
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
        assert worker.returncode == 0, output

        stats = idp.stats()
        # the round did not go on: the calls in flight when it was told to stop, perhaps the
        # next turn's already started, and no more (the whole round would make TOKENS calls)
        assert 1 <= stats["refresh_grants"] <= 2 * CONCURRENCY, stats
        assert stats["invalid_grant"] == 0

        container = await build_container(load_settings(config, env=env, data_dir=data_dir), env=env)
        try:
            refreshed = 0
            for org in orgs:
                async with container.ctx.uow() as uow:
                    record = await uow.tokens.get_for_connector(org, "fakeIdp")
                assert record is not None
                # the live refresh token: rotated ones stored, the others untouched
                assert idp.is_refresh_token_valid(record.tokens.refresh_token), org
                refreshed += record.version == 2
            assert refreshed == stats["refresh_grants"]
        finally:
            await container.aclose()
        assert "stop-secret" not in output
