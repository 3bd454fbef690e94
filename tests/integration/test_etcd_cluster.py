"""The etcd adapters on a real 3-member cluster: a member frozen (SIGSTOP) or killed costs a call
one member timeout at most, then it is avoided until it answers again; the configuration watch
and the leases move to another member; a write whose first attempt landed on a member that then
froze is not reported as a conflict when it is tried again elsewhere."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from adapters.etcd import EtcdConfigWatcher, EtcdKeyValueStore, EtcdLeaseLock, connect_etcd
from adapters.etcd.kv_store import EtcdOps
from adapters.system import SystemClock
from connector_core.deadline import deadline
from connector_core.errors import Unavailable
from tests import servers
from tests.integration.test_etcd_redis import Reloads
from tests.servers import ServerProcess

pytestmark = [pytest.mark.etcd, pytest.mark.slow]

MEMBER_TIMEOUT = 0.3


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[ServerProcess]]:
    members = servers.etcd_cluster(3)
    try:
        yield members
    finally:
        for member in members:
            member.close()


@pytest.fixture
def all_running(cluster: list[ServerProcess]) -> Iterator[list[ServerProcess]]:
    """The cluster, every member running and answering again after the test."""
    try:
        yield cluster
    finally:
        for member in cluster:
            if member.proc is not None and member.proc.poll() is None:
                member.resume()
            else:
                member.start()
        for member in cluster:
            member.wait_ready()


def store_on(
    cluster: list[ServerProcess],
    namespace: str,
    *,
    first: ServerProcess | None = None,
    member_timeout: float = MEMBER_TIMEOUT,
) -> EtcdKeyValueStore:
    """A store on every member, using ``first`` (else the first listed) until it fails."""
    ordered = sorted(cluster, key=lambda m: m is not first)
    return connect_etcd(
        *[("127.0.0.1", m.port) for m in ordered], timeout=2.0, member_timeout=member_timeout, namespace=namespace
    )


def a_follower(cluster: list[ServerProcess]) -> ServerProcess:
    leader = servers.etcd_leader(cluster)
    return next(m for m in cluster if m is not leader)


def serving(store: EtcdKeyValueStore, cluster: list[ServerProcess]) -> ServerProcess:
    """The server process of the member the store sends its calls to."""
    port = store.members.current.port
    return next(m for m in cluster if m.port == port)


async def test_a_frozen_member_costs_one_member_timeout_then_is_avoided_until_it_answers(
    all_running: list[ServerProcess],
) -> None:
    """A follower in use freezes: the leader and the other follower go on without it. (A frozen
    leader is a leader election, a second or two in which no member can commit a write: the
    end-to-end test covers it.)"""
    cluster = all_running
    store = store_on(cluster, f"/cm-cluster/{uuid.uuid4().hex[:8]}", first=a_follower(cluster))
    try:
        revision = await store.put("/k", "v1")
        frozen = serving(store, cluster)
        frozen.hang()
        # within one request's deadline: the frozen member gets MEMBER_TIMEOUT, the next answers
        with deadline(1.5):
            revision = await store.put("/k", "v2", expected_revision=revision)
        assert store.members.current.port != frozen.port
        assert [m.suspect for m in store.members.members if m.port == frozen.port] == [True]
        # ... and it is not asked again while frozen: every later call goes to the others
        avoided = next(m for m in store.members.members if m.port == frozen.port)
        asked: list[bytes] = []
        real_get = avoided.client.get

        async def spy(key: bytes, *args: object, **kwargs: object) -> object:
            asked.append(key)
            return await real_get(key, *args, **kwargs)

        avoided.client.get = spy
        for _ in range(5):
            await store.get("/k")
        assert asked == []
        got = await store.get("/k")
        assert got is not None and got.value == "v2" and got.revision == revision

        frozen.resume()
        async with asyncio.timeout(10):  # the probe finds it answering again
            while any(m.suspect for m in store.members.members):
                await asyncio.sleep(0.05)
        assert await store.check() is True
    finally:
        await store.aclose()


async def test_killed_leader_and_killed_member_in_use_leave_the_cluster_usable(
    all_running: list[ServerProcess],
) -> None:
    cluster = all_running
    namespace = f"/cm-cluster/{uuid.uuid4().hex[:8]}"
    store = store_on(cluster, namespace)
    lock = EtcdLeaseLock(store.members, SystemClock(), prefix=f"{namespace}/locks/")
    try:
        await store.put("/k", "v1")
        lease = await lock.acquire("token-refresh:t1", 30)
        assert lease is not None

        servers.etcd_leader(cluster).kill()
        # a new leader is elected in a second or two; meanwhile calls may answer Unavailable
        async with asyncio.timeout(20):
            while True:
                try:
                    lease = await lock.extend(lease, 30)  # the lease's keep-alive goes on elsewhere
                    break
                except Unavailable:
                    await asyncio.sleep(0.1)
        survivor = serving(store, cluster)
        survivor.kill()  # the member in use dies too: one member is left, no quorum
        with pytest.raises(Unavailable):
            await store.put("/k", "no quorum")
        # the last member still answers, but knows no leader: the health check says so
        async with asyncio.timeout(20):
            while await store.check():
                await asyncio.sleep(0.2)
        survivor.start()  # a quorum again
        async with asyncio.timeout(20):
            while True:
                try:
                    await store.put("/k", "v2")
                    break
                except Unavailable:
                    await asyncio.sleep(0.1)
        got = await store.get("/k")
        assert got is not None and got.value == "v2"
        assert await store.check() is True
        assert await lock.release(lease) is True
    finally:
        await store.aclose()


async def test_the_config_watch_moves_to_another_member_when_its_member_freezes(
    all_running: list[ServerProcess],
) -> None:
    cluster = all_running
    namespace = f"/cm-cluster/{uuid.uuid4().hex[:8]}"
    follower = a_follower(cluster)
    # a member timeout a loaded machine cannot miss: the watch must start on the follower (a
    # member resumed by the test before answers slowly at first, and would be avoided)
    store = store_on(cluster, namespace, first=follower, member_timeout=1.5)
    writer = store_on(cluster, namespace, first=servers.etcd_leader(cluster))
    reloads = Reloads()
    watcher = EtcdConfigWatcher(store.members, f"{namespace}/config", reloads, check_interval=0.2)
    try:
        async with watcher:
            async with asyncio.timeout(5):
                await watcher.wait_watching()
            watched = serving(store, cluster)
            assert watched is follower
            watched.hang()
            async with asyncio.timeout(10):  # noticed by the watch's own check, re-subscribed elsewhere
                while store.members.current.port == watched.port or not watcher.watching:
                    await asyncio.sleep(0.05)
            await reloads.next(within=10)  # changes may have been missed while it moved: reload once
            seen = reloads.calls
            await writer.put("/config", "changed")
            await reloads.next(within=10)
            assert reloads.calls == seen + 1
    finally:
        await writer.aclose()
        await store.aclose()


async def test_a_guarded_put_that_already_landed_is_not_a_conflict(all_running: list[ServerProcess]) -> None:
    store = store_on(all_running, f"/cm-cluster/{uuid.uuid4().hex[:8]}")
    ops: EtcdOps = store._ops
    try:
        key = store._ns + "/once"
        first = await ops.put_guarded("test", [ops.absent(key)], key, b"value-1")
        again = await ops.put_guarded("test", [ops.absent(key)], key, b"value-1")  # as a retry would
        other = await ops.put_guarded("test", [ops.absent(key)], key, b"value-2")
        assert first[0] and again[0] and not other[0]
        assert first[1] is not None and again[1] is not None and first[1].mod_revision == again[1].mod_revision
    finally:
        await store.aclose()


async def test_a_client_made_after_a_member_came_back_is_not_refused_by_an_older_clients_failure(
    all_running: list[ServerProcess],
) -> None:
    # one client saw the member refuse connections while it was down (and is still open); a
    # client made once the member is back must reach it at once, not inherit that failure
    member = a_follower(all_running)
    older = connect_etcd(("127.0.0.1", member.port), timeout=1.0, namespace="/cm-cluster/refused")
    newer = None
    try:
        member.kill()
        with pytest.raises(Unavailable):
            await older.get("/k")
        member.start()
        newer = connect_etcd(("127.0.0.1", member.port), timeout=1.0, namespace="/cm-cluster/refused")
        assert await newer.get("/k") is None
    finally:
        await older.aclose()
        if newer is not None:
            await newer.aclose()
