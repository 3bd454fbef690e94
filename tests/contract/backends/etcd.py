"""etcd adapters against the session's etcd server; every test gets its own key prefix."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from adapters.etcd import EtcdLeaseLock, connect_etcd
from adapters.etcd.kv_store import EtcdKeyValueStore
from adapters.system import SystemClock
from tests.contract.backends import Env, LockUnderTest, real_advance

MARK = "etcd"


@contextlib.asynccontextmanager
async def _store(env: Env) -> AsyncIterator[EtcdKeyValueStore]:
    host, port = env.request.getfixturevalue("etcd_endpoint")
    store = connect_etcd((host, port), namespace=f"/cm-test/{uuid.uuid4().hex}")
    try:
        yield store
    finally:
        await store.aclose()


@contextlib.asynccontextmanager
async def kv(env: Env) -> AsyncIterator[EtcdKeyValueStore]:
    async with _store(env) as store:
        yield store


@contextlib.asynccontextmanager
async def lock(env: Env) -> AsyncIterator[LockUnderTest]:
    # etcd leases run on real time, so the lock reads the system clock and the test really sleeps
    async with _store(env) as store:
        yield LockUnderTest(
            EtcdLeaseLock(store.members, SystemClock(), prefix=f"/cm-test/{uuid.uuid4().hex}/locks/"), real_advance
        )
