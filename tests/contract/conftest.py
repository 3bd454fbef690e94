"""Every contract suite runs once per backend that provides its port (one marker each).
Backends live in ``tests/contract/backends/``; see its ``__init__``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.crypto import Aead, Keyring
from adapters.system import ManualClock
from connector_core.ports.cache import Cache
from connector_core.ports.kv_store import KeyValueStore
from tests.contract.backends import (
    Damageable,
    Env,
    IamUnderTest,
    IdempotencyUnderTest,
    LockUnderTest,
    Storage,
    params,
)
from tests.contract.backends import sqlite as sqlite_backend

Harness = Storage


@pytest.fixture
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    return Env(request, tmp_path, ManualClock(), Aead(Keyring.generate()))


@pytest.fixture(params=params("storage"))
async def harness(request: pytest.FixtureRequest, env: Env) -> AsyncIterator[Storage]:
    async with request.param.storage(env) as st:
        yield st


@pytest.fixture(params=params("damage_token"))
async def damageable(request: pytest.FixtureRequest, env: Env) -> AsyncIterator[Damageable]:
    """The storage backends that keep token records as bytes (the memory store keeps objects:
    there is nothing to damage)."""
    async with request.param.storage(env) as st:
        module = request.param

        async def damage(token_id: str, field: str) -> None:
            await module.damage_token(st, token_id, field)

        async def material(token_id: str) -> object:
            return await module.token_material(st, token_id)

        async def set_material(token_id: str, sealed: str) -> None:
            await module.set_token_material(st, token_id, sealed)

        yield Damageable(st, damage, material, set_material)


@pytest.fixture(params=params("kv"))
async def kv_store(request: pytest.FixtureRequest, env: Env) -> AsyncIterator[KeyValueStore]:
    async with request.param.kv(env) as store:
        yield store


@pytest.fixture(params=params("lock"))
async def lease_lock(request: pytest.FixtureRequest, env: Env) -> AsyncIterator[LockUnderTest]:
    async with request.param.lock(env) as lut:
        yield lut


@pytest.fixture(params=params("cache"))
async def cache(request: pytest.FixtureRequest, env: Env) -> AsyncIterator[Cache]:
    async with request.param.cache(env) as c:
        yield c


@pytest.fixture(params=params("idempotency"))
async def idempotency(request: pytest.FixtureRequest, env: Env) -> AsyncIterator[IdempotencyUnderTest]:
    async with request.param.idempotency(env) as under_test:
        yield under_test


@pytest.fixture(params=params("iam"))
async def iam(request: pytest.FixtureRequest, env: Env) -> AsyncIterator[IamUnderTest]:
    async with request.param.iam(env) as under_test:
        yield under_test


@pytest.fixture
async def sqlite_harness(env: Env) -> AsyncIterator[Storage]:
    """For checks only an on-disk, multi-process store can answer."""
    async with sqlite_backend.storage(env) as st:
        yield st


def raw(obj: Any) -> Any:
    return obj
