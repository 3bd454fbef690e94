"""Clusters, not single servers: a 3-member etcd cluster (secrets, refresh leases) and Redis with
Sentinel (read cache; then the leases) lose a member while 4 ``worker`` processes keep
refreshing rotating tokens and a ``serve`` process is read.

Faults, in order: the etcd member every process uses is frozen (SIGSTOP) and resumed, the etcd
leader is killed and started again, the Redis primary is killed (the Sentinels promote its
replica). What must hold:

- 0 refresh tokens reused (the provider saw no ``invalid_grant``: no worker sent a refresh
  token another had already used) and 0 lost (every stored refresh token is the live one);
- every API read after the first fault answered quickly (see ``ANSWER_BOUND``);
- nothing stuck after recovery: every token is refreshed again once the faults are over.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from attrs import define, field

from entrypoints.bootstrap import build_container
from entrypoints.http.auth import issue_user_token
from entrypoints.settings import load_settings
from tests import servers
from tests.due_tokens import provider_toml, seed_due_tokens
from tests.e2e.test_faults import ROOT, Serve
from tests.fakes.oauth_provider import FakeOAuthProvider
from tests.servers import RedisSentinelGroup, ServerProcess

pytestmark = [pytest.mark.mongo, pytest.mark.etcd, pytest.mark.redis, pytest.mark.slow]

TOKENS = 40
WORKERS = 4
#: refreshed tokens live this long: each is due again 2-4 s after its refresh (half its
#: lifetime, minus jitter), so the workers refresh all the time, through every fault
TOKEN_SECONDS = 8
#: The issue asks for "no request over 2 s after the first failover"; a request gets 1.5 s for
#: its dependency calls. The bound adds a second of slack for a loaded two-core test machine
#: (nine servers, five service processes and the test share it): it catches the old failure
#: (15 s answers while the member in use was frozen), it is not a benchmark.
ANSWER_BOUND = 3.0


@define
class Cluster:
    etcd: list[ServerProcess]
    redis: RedisSentinelGroup


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    etcd = servers.etcd_cluster(3)
    try:
        redis = servers.redis_sentinel_group()
    except BaseException:
        for member in etcd:
            member.close()
        raise
    try:
        yield Cluster(etcd, redis)
    finally:
        redis.close()
        for member in etcd:
            member.close()


class Worker:
    """One ``connector-manager worker`` process, its output in a file."""

    def __init__(self, config: Path, data_dir: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "entrypoints.cli",
                    "worker",
                    "--config",
                    str(config),
                    "--data-dir",
                    f"{data_dir}",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


@define
class Reader:
    """Reads the API (the connector list and a configuration of a few orgs) until stopped."""

    url: str
    headers: list[tuple[str, dict[str, str]]]
    answers: list[tuple[float, str, int, float]] = field(factory=list)  # (when, what, status, seconds)
    stop: asyncio.Event = field(factory=asyncio.Event)

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                for org, headers in self.headers:
                    for what, path in (("list", "/api/v1/connectors"), ("config", "/api/v1/connectors/config/fakeIdp")):
                        started = time.monotonic()
                        r = await client.get(path, headers=headers)
                        self.answers.append((started, f"{what} {org}", r.status_code, time.monotonic() - started))
                await asyncio.sleep(0.05)

    def after(self, moment: float) -> list[tuple[float, str, int, float]]:
        return [a for a in self.answers if a[0] >= moment]


async def wait_until_each_refreshed(idp: FakeOAuthProvider, since: dict[str, int], within: float) -> dict[str, int]:
    """Poll the provider until every lineage was refreshed again after ``since``."""
    deadline = time.monotonic() + within
    while True:
        now = idp.stats()["refreshes_by_lineage"]
        behind = [lineage for lineage, n in since.items() if now.get(lineage, 0) <= n]
        if not behind:
            return dict(now)
        assert time.monotonic() < deadline, f"{len(behind)} tokens were not refreshed again after recovery"
        await asyncio.sleep(0.2)


def settings_text(cluster: Cluster, mongo_url: str, idp: FakeOAuthProvider, locks: str) -> str:
    etcd = ", ".join(f'"127.0.0.1:{m.port}"' for m in cluster.etcd)
    sentinels = ", ".join(f'"{s}"' for s in cluster.redis.sentinel_endpoints)
    return f"""
storage = "mongo"
mongo_url = "{mongo_url}"
mongo_database = "clusters_{uuid.uuid4().hex[:8]}"
secrets = "etcd"
etcd_endpoints = [{etcd}]
etcd_namespace = "/clusters-{uuid.uuid4().hex[:8]}"
etcd_member_timeout_seconds = 0.4
locks = "{locks}"
cache = "redis"
redis_sentinels = [{sentinels}]
redis_sentinel_master = "{cluster.redis.master}"
refresh_interval_seconds = 0.3
refresh_batch_size = 200
refresh_concurrency = 8
run_refresher = false
oauth_http_timeout_seconds = 5
""" + provider_toml(idp)


async def etcd_then_redis_faults(cluster: Cluster) -> None:
    """The etcd member every process uses frozen, the etcd leader killed, the Redis primary killed."""
    in_use = cluster.etcd[0]  # every process uses the first listed member while it answers
    in_use.hang()
    await asyncio.sleep(5)
    in_use.resume()
    await asyncio.sleep(2)
    leader = servers.etcd_leader(cluster.etcd)
    leader.kill()
    await asyncio.sleep(4)
    leader.start()
    cluster.redis.current_primary().kill()
    await asyncio.sleep(4)


async def redis_primary_killed(cluster: Cluster) -> None:
    """The Redis primary that holds the leases killed (after the previous one came back as a
    replica); the faults last until the Sentinels named another, and 4 s more. (With the leases
    in Redis nothing is refreshed before that: on a loaded machine the failover took 4.5 s, and
    a fixed 4 s window saw no refresh at all.)"""
    killed = cluster.redis.current_primary()
    killed.kill()
    deadline = time.monotonic() + 30
    while await asyncio.to_thread(cluster.redis.current_primary) is killed:
        assert time.monotonic() < deadline, "the Sentinels did not fail over"
        await asyncio.sleep(0.1)
    await asyncio.sleep(4)


@pytest.mark.parametrize(
    ("locks", "faults"),
    [("etcd", etcd_then_redis_faults), ("redis", redis_primary_killed)],
    ids=["etcd-leases", "redis-leases"],
)
async def test_four_workers_and_the_api_ride_out_failovers(
    tmp_path: Path, cluster: Cluster, mongo_url: str, locks: str, faults: Callable[[Cluster], Awaitable[None]]
) -> None:
    cluster.redis.restart_stopped()  # a primary killed before is back, as a replica
    with FakeOAuthProvider(access_token_ttl=TOKEN_SECONDS, rotate_refresh_tokens=True) as idp:
        idp.register_client("cid-clusters", "clusters-secret")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
        env |= {"CM_MASTER_KEY": "clusters-" + uuid.uuid4().hex, "CM_JWT_SECRET": "clusters-jwt-" + uuid.uuid4().hex}
        config = tmp_path / "cm.toml"
        config.write_text(settings_text(cluster, mongo_url, idp, locks), encoding="utf-8")
        data_dir = tmp_path / "data"
        orgs = [f"org-{n:03d}" for n in range(TOKENS)]
        await seed_due_tokens(config, data_dir, env, idp, orgs, client=("cid-clusters", "clusters-secret"))

        serve = Serve(config, data_dir, env)
        serve.start()
        workers = [Worker(config, data_dir, env, tmp_path / f"worker-{i}.log") for i in range(WORKERS)]
        now = int(time.time())
        headers = [
            (org, {"Authorization": "Bearer " + issue_user_token(
                env["CM_JWT_SECRET"], user_id="ops", org_id=org, email="ops@example.com", admin=True, ttl=3600, now=now
            )})
            for org in orgs[:3]
        ]  # fmt: skip
        reader = Reader(serve.url, headers)
        reading = asyncio.create_task(reader.run())
        try:
            # every token refreshed once: the workers are running
            baseline = await wait_until_each_refreshed(idp, {lineage: 0 for lineage in _lineages(idp)}, 60)

            first_fault = time.monotonic()
            await faults(cluster)
            recovered = idp.stats()["refreshes_by_lineage"]

            # nothing stuck: every token is refreshed again after the last fault
            await wait_until_each_refreshed(idp, recovered, 45)
            assert baseline
        finally:
            reader.stop.set()
            await reading
            codes = [w.stop() for w in workers]
            serve.stop()
        logs = "".join(w.log.read_text(errors="replace") for w in workers)
        assert codes == [0] * WORKERS, logs[-3000:]

        stats = idp.stats()
        assert stats["invalid_grant"] == 0, logs[-3000:]  # 0 refresh tokens reused
        # they kept refreshing through the faults: grants between the first fault and the last
        during = sum(recovered.values()) - sum(baseline.values())
        assert during > 0, "no token was refreshed while the faults went on"

        late = reader.after(first_fault)
        assert late, "the API was not read during the faults"
        slow = [a for a in late if a[3] >= ANSWER_BOUND]
        assert not slow, slow  # generous bound, see ANSWER_BOUND
        assert {a[2] for a in late} <= {200, 503}, [a for a in late if a[2] not in (200, 503)]

        # 0 lost: every stored refresh token is the one the provider holds live
        container = await build_container(load_settings(config, env=env, data_dir=data_dir), env=env)
        try:
            for org in orgs:
                async with container.ctx.uow() as uow:
                    record = await uow.tokens.get_for_connector(org, "fakeIdp")
                assert record is not None and idp.is_refresh_token_valid(record.tokens.refresh_token), org
        finally:
            await container.aclose()
        assert "clusters-secret" not in logs


def _lineages(idp: FakeOAuthProvider) -> list[str]:
    return list(idp.stats()["refreshes_by_lineage"])
