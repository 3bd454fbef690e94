"""The etcd and Redis adapters against real servers: encryption at rest, configuration watching,
outages (server stopped) and recovery (server started again) with the same adapter objects.

Tests that stop a session server start it again in ``finally``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aetcd
import pytest
import redis.asyncio as aioredis

from adapters.crypto import Aead, EncryptedKeyValueStore, Keyring
from adapters.etcd import EtcdConfigWatcher, EtcdLeaseLock, connect_etcd
from adapters.factories.redis import open_redis
from adapters.factories.sections import RedisSettings
from adapters.read_cache import ReadThroughCache
from adapters.redis import RedisCache, RedisLeaseLock, connect_redis
from adapters.system import SystemClock
from connector_core.errors import ConnectorManagerError, Unavailable
from tests import servers
from tests.servers import ServerProcess, _etcd_ready, free_port

T = TypeVar("T")


def ns() -> str:
    return f"/cm-it/{uuid.uuid4().hex[:10]}"


async def eventually(op: Callable[[], Awaitable[T]], *, within: float = 15.0) -> T:
    """``await op()`` until it stops raising :class:`Unavailable` (a server coming back)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await op()
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


class Reloads:
    """An ``on_change`` that records its calls."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.calls = 0
        self._fail_first = fail_first
        self._event = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        self._event.set()
        if self._fail_first and self.calls == 1:
            raise RuntimeError("reload failed")

    async def next(self, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            await self._event.wait()
        self._event.clear()


# -- etcd ------------------------------------------------------------------------------------


@pytest.mark.etcd
async def test_etcd_holds_only_ciphertext_under_the_encrypted_store(etcd_endpoint: tuple[str, int]) -> None:
    namespace = ns()
    store = connect_etcd(etcd_endpoint, namespace=namespace)
    secrets_store = EncryptedKeyValueStore(store, Aead(Keyring.generate()))
    planted = f"PLANTED-{uuid.uuid4().hex}"
    config = {"clientId": "id-1", "clientSecret": planted}
    raw_client = aetcd.Client(*etcd_endpoint)
    try:
        await secrets_store.put("/services/secretKeys", json.dumps({"jwtSecret": planted}))
        await secrets_store.put("/services/connectors/atlassian/config/org-1", json.dumps(config))

        raw = await raw_client.get(f"{namespace}/services/secretKeys".encode())
        listed = await raw_client.get_prefix(f"{namespace}/services/".encode())
        assert raw is not None and planted.encode() not in raw.value
        assert len(listed.kvs) == 2
        assert all(planted.encode() not in kv.value and b"clientSecret" not in kv.value for kv in listed.kvs)

        got = await secrets_store.get("/services/connectors/atlassian/config/org-1")
        assert got is not None and json.loads(got.value) == config
        raw_entry = await store.get("/services/connectors/atlassian/config/org-1")
        assert raw_entry is not None and got.revision == raw_entry.revision
    finally:
        await raw_client.close()
        await store.aclose()


@pytest.mark.etcd
async def test_config_watcher_reloads_once_per_burst_of_foreign_writes(etcd_endpoint: tuple[str, int]) -> None:
    namespace = ns()
    this_process = connect_etcd(etcd_endpoint)
    other_process = connect_etcd(etcd_endpoint, namespace=namespace)  # another instance, its own connection
    reloads = Reloads(fail_first=True)
    try:
        async with EtcdConfigWatcher(this_process.members, f"{namespace}/services/connectors/", reloads) as watcher:
            async with asyncio.timeout(5):
                await watcher.wait_watching()

            for i in range(5):  # one burst: one reload (debounced)
                await other_process.put(f"/services/connectors/googleWorkspace/config/org-{i}", "v")
            await reloads.next()
            await asyncio.sleep(0.5)
            assert reloads.calls == 1  # ... and it raised: logged, the watcher carries on

            await other_process.delete("/services/connectors/googleWorkspace/config/org-0")
            await reloads.next()
            assert reloads.calls == 2

            await other_process.put("/services/secretKeys", "not under the prefix")
            await asyncio.sleep(0.5)
            assert reloads.calls == 2
            assert watcher.watching
        assert not watcher.running
    finally:
        await other_process.aclose()
        await this_process.aclose()


@pytest.mark.etcd
async def test_etcd_outage_raises_unavailable_quickly_then_everything_recovers(
    etcd_server: ServerProcess, etcd_endpoint: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    namespace = ns()
    store = connect_etcd(etcd_endpoint, namespace=namespace)
    lock = EtcdLeaseLock(store.members, SystemClock(), prefix=f"{namespace}/locks/")
    reloads = Reloads()
    watcher = EtcdConfigWatcher(store.members, f"{namespace}/services/", reloads, initial_backoff=0.1, max_backoff=1)
    other_process = connect_etcd(etcd_endpoint, namespace=namespace)
    try:
        revision = await store.put("/services/connectors/onedrive/config/org-1", "before")
        watcher.start()
        async with asyncio.timeout(5):
            await watcher.wait_watching()

        etcd_server.stop()
        try:
            for attempt in (
                lambda: store.get("/services/connectors/onedrive/config/org-1"),
                lambda: store.put("/services/connectors/onedrive/config/org-1", "during", expected_revision=revision),
                lambda: store.list_prefix("/services/"),
                lambda: lock.acquire("refresh", 5),
            ):
                started = time.monotonic()
                with pytest.raises(Unavailable) as caught:
                    await attempt()
                assert time.monotonic() - started < 3
                assert "etcd is unavailable" in caught.value.message
            assert await store.check() is False
            for _ in range(50):
                if not watcher.watching:
                    break
                await asyncio.sleep(0.1)
            assert not watcher.watching
        finally:
            etcd_server.start()

        # the same objects work again: etcd kept its data, the lock and the watch come back
        got = await eventually(lambda: store.get("/services/connectors/onedrive/config/org-1"))
        assert got is not None and got.value == "before" and got.revision == revision
        assert await store.check() is True
        lease = await eventually(lambda: lock.acquire("refresh", 5))
        assert lease is not None
        async with asyncio.timeout(10):
            await watcher.wait_watching()
        await reloads.next()  # a reload after re-subscribing: changes may have been missed
        seen = reloads.calls
        await other_process.put("/services/connectors/onedrive/config/org-2", "after")
        await reloads.next()
        assert reloads.calls == seen + 1
        assert [r.levelno for r in caplog.records if "etcd watch" in r.getMessage() and "lost" in r.getMessage()] == [
            logging.WARNING
        ]
    finally:
        await watcher.stop()
        await other_process.aclose()
        await store.aclose()


@pytest.mark.etcd
async def test_expired_etcd_auth_token_is_renewed_and_bad_credentials_are_named(tmp_path: Path) -> None:
    """etcd's simple auth tokens expire after ``--auth-token-ttl`` without use (5 min by default)
    and aetcd authenticates once per connection: without a renewal every call would fail forever."""
    peer = free_port()

    def command(port: int, workdir: str) -> list[str]:
        return ["etcd", "--name", "auth", "--data-dir", f"{workdir}/data",
                "--listen-client-urls", f"http://127.0.0.1:{port}",
                "--advertise-client-urls", f"http://127.0.0.1:{port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"auth=http://127.0.0.1:{peer}",
                "--auth-token-ttl", "1", "--log-level", "warn", "--logger", "zap"]  # fmt: skip

    server = ServerProcess("etcd-auth", command, _etcd_ready)
    server.start()
    store = connect_etcd(("127.0.0.1", server.port), user="app", password="app-password-1")
    wrong = connect_etcd(("127.0.0.1", server.port), user="app", password="not-the-password")
    try:
        endpoint = f"127.0.0.1:{server.port}"
        for args in (
            ["user", "add", "root:root-password-1"],
            ["user", "add", "app:app-password-1"],
            ["role", "add", "app"],
            ["role", "grant-permission", "app", "--prefix=true", "readwrite", "/services/"],
            ["user", "grant-role", "app", "app"],
            ["auth", "enable"],
        ):
            subprocess.run(
                ["etcdctl", "--endpoints", endpoint, *args],
                check=True,
                capture_output=True,
                env={**os.environ, "ETCDCTL_API": "3"},
                timeout=10,
            )
        await store.put("/services/secretKeys", "ciphertext")
        await asyncio.sleep(3)  # the token expires
        got = await store.get("/services/secretKeys")
        assert got is not None and got.value == "ciphertext"

        with pytest.raises(ConnectorManagerError) as denied:
            await store.get("/elsewhere")
        assert "permission denied" in denied.value.message and not isinstance(denied.value, Unavailable)
        with pytest.raises(ConnectorManagerError) as refused:
            await wrong.get("/services/secretKeys")
        assert "authentication failed" in refused.value.message
        assert "not-the-password" not in str(refused.value) and "app-password" not in str(refused.value)
        assert await wrong.check() is False and await store.check() is True
    finally:
        await store.aclose()
        await wrong.aclose()
        server.close()


# -- Redis -----------------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_outage_is_a_fast_unavailable_the_read_cache_bypasses_it_and_all_recovers(
    redis_server: ServerProcess, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"cm-it:{uuid.uuid4().hex[:10]}:"
    client = connect_redis(redis_url)
    cache = RedisCache(client, prefix=prefix)
    reads = ReadThroughCache(cache, probe_max_interval=0.1)
    lock = RedisLeaseLock(client, SystemClock(), prefix=prefix + "lock:")
    caplog.set_level(logging.INFO, logger="adapters")
    source = {"org-1": [{"isEnabled": True}]}

    async def load() -> list[dict[str, bool]]:
        return source["org-1"]

    try:
        await cache.set("connectors:org-1", '{"isEnabled": true}', 30)
        assert await cache.get("connectors:org-1") == '{"isEnabled": true}'
        assert await reads.get_or_load("org-1", "connectors", load) == [{"isEnabled": True}]
        first = await lock.acquire("refresh", 30)
        assert first is not None

        redis_server.stop()
        try:
            for attempt in (
                lambda: cache.get("connectors:org-1"),  # nothing is silently lost: every call says so
                lambda: cache.get_many("connectors:org-1"),
                lambda: cache.set("connectors:org-1", '{"isEnabled": false}', 30),
                lambda: cache.delete("connectors:org-1"),
                lambda: lock.acquire("refresh", 5),
                lambda: lock.release(first),
                lambda: lock.extend(first, 5),
            ):
                started = time.monotonic()
                with pytest.raises(Unavailable) as refused:
                    await attempt()
                assert time.monotonic() - started < 1.5
                assert "Redis is unavailable" in refused.value.message
            assert await cache.check() is False
            source["org-1"] = [{"isEnabled": False}]  # a write while Redis is away ...
            with pytest.raises(Unavailable):
                await reads.invalidate_org("org-1")  # ... whose invalidation is lost
            for _ in range(3):  # reads answer from the source, without asking Redis again
                started = time.monotonic()
                assert await reads.get_or_load("org-1", "connectors", load) == [{"isEnabled": False}]
                assert time.monotonic() - started < 0.5
            assert reads.bypassed
        finally:
            redis_server.start()

        # the same objects work again (this Redis keeps no data across restarts)
        assert await eventually(cache.check) is True
        async with asyncio.timeout(10):
            while reads.bypassed:
                await asyncio.sleep(0.05)
        assert await reads.get_or_load("org-1", "connectors", load) == [{"isEnabled": False}]
        assert await cache.get("connectors:org-1") is None
        await cache.set("connectors:org-1", '{"isEnabled": false}', 30)
        assert await cache.get("connectors:org-1") == '{"isEnabled": false}'
        await cache.delete("connectors:org-1")
        assert await cache.get("connectors:org-1") is None
        lease = await lock.acquire("refresh", 5)  # Redis lost the lock: it is free again
        assert lease is not None and lease.owner != first.owner
        assert await lock.release(lease) is True

        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len([w for w in warnings if "read cache bypassed" in w]) == 1, warnings  # once per outage
        assert any("read cache in use again" in r.getMessage() for r in caplog.records)
        assert all(
            redis_url not in r.getMessage() and str(redis_server.port) not in r.getMessage() for r in caplog.records
        )
    finally:
        await reads.aclose()
        await client.aclose()


@pytest.mark.redis
async def test_start_up_waits_for_a_redis_that_answers_a_moment_later() -> None:
    server = servers.redis()  # its port is chosen; nothing listens there yet (a failover under way)
    try:
        settings = RedisSettings(url=f"redis://127.0.0.1:{server.port}/0", start_up_timeout_seconds=15)
        opening = asyncio.create_task(open_redis(settings))
        await asyncio.sleep(1.0)
        assert not opening.done(), opening  # refused, tried again: still waiting
        await asyncio.to_thread(server.start)
        backend = await asyncio.wait_for(opening, timeout=15)
        try:
            assert await backend.check() is True
        finally:
            await backend.aclose()
    finally:
        server.close()


@pytest.mark.redis
async def test_start_up_stops_at_once_when_redis_refuses_the_password() -> None:
    server = servers.redis()
    server.start()
    try:
        admin = aioredis.Redis(host="127.0.0.1", port=server.port)
        await admin.config_set("requirepass", "the-right-one")
        await admin.aclose()
        settings = RedisSettings(url=f"redis://:PLANTED-WRONG@127.0.0.1:{server.port}/0", start_up_timeout_seconds=15)
        started = time.monotonic()
        with pytest.raises(Unavailable) as refused:
            await open_redis(settings)
        assert time.monotonic() - started < 5  # not the 15 s budget: trying again cannot help
        assert "refused this service: authentication failed" in str(refused.value)
        assert "PLANTED-WRONG" not in str(refused.value)
    finally:
        server.close()
