"""Backends for the contract suites, one module each.

A module sets ``MARK`` (the pytest marker, e.g. ``"mongo"``) and defines any of these async
context-manager factories, each taking a :class:`Env`:

- ``storage(env) -> Storage``: unit of work, outbox reader, OAuth state store
- ``kv(env) -> KeyValueStore``
- ``lock(env) -> LockUnderTest``
- ``cache(env) -> Cache``
- ``idempotency(env) -> IdempotencyUnderTest``
- ``iam(env) -> IamUnderTest``

and, for stores that keep token records as bytes (so what is stored can be damaged, as a
disk or another program could), ``damage_token(storage, token_id, field)``: overwrite a
record's ``material`` or ``meta`` with what no store of ours writes; ``token_material(storage,
token_id)`` and ``set_token_material(storage, token_id, material)``: read and overwrite its
sealed material alone (material as an older release sealed it).

The contract conftest parametrizes every suite over every module that provides its port.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from attrs import define, field

from adapters.crypto import Aead
from adapters.sealing import NothingSealed, SealedValues
from adapters.system import ManualClock
from connector_core.ports.iam import IdentityAccess, Principal
from connector_core.ports.idempotency import IdempotencyStore
from connector_core.ports.lock import LeaseLock
from connector_core.ports.oauth_state import OAuthStateStore
from connector_core.ports.outbox import OutboxReader
from connector_core.ports.unit_of_work import UnitOfWork


@define
class Env:
    request: pytest.FixtureRequest
    tmp_path: Path
    clock: ManualClock
    aead: Aead


@define
class Storage:
    name: str
    uow: Callable[[], UnitOfWork]
    outbox: OutboxReader
    states: OAuthStateStore
    clock: ManualClock
    #: a second, independent handle on the same store (another "process"), if there is one
    reopen: Callable[[], Any] | None = None
    extra: Any = None
    #: its sealed values at rest, for key rotation
    sealed: SealedValues = field(factory=NothingSealed)


@define
class Damageable:
    """A storage backend whose token records can be damaged in place."""

    storage: Storage
    #: ``damage(token_id, field)``: overwrite the record's ``material`` or ``meta``
    damage: Callable[[str, str], Awaitable[None]]
    #: ``material(token_id)``: the record's sealed material as stored
    material: Callable[[str], Awaitable[object]]
    #: ``set_material(token_id, material)``: overwrite the record's sealed material alone
    set_material: Callable[[str, str], Awaitable[None]]


@define
class LockUnderTest:
    lock: LeaseLock
    #: let ``seconds`` pass as this lock sees time (moves a manual clock, or really sleeps)
    advance: Callable[[float], Awaitable[None]]


@define
class IdempotencyUnderTest:
    store: IdempotencyStore
    #: a second, independent handle on the same records (another "process")
    other: IdempotencyStore


@define
class IamUnderTest:
    iam: IdentityAccess
    #: arrange, the way this adapter learns it, that the user administers the org; their principal
    make_admin: Callable[[str, str], Awaitable[Principal]]
    #: arrange that the user is a plain member of the org; their principal
    make_member: Callable[[str, str], Awaitable[Principal]]


def manual_advance(clock: ManualClock) -> Callable[[float], Awaitable[None]]:
    async def advance(seconds: float) -> None:
        clock.advance(seconds)

    return advance


async def real_advance(seconds: float) -> None:
    await asyncio.sleep(seconds)


def discover() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        found[info.name] = importlib.import_module(f"{__name__}.{info.name}")
    return found


def params(port: str) -> list[Any]:
    """pytest params for every backend that provides ``port``, each with its marker."""
    return [
        pytest.param(module, marks=getattr(pytest.mark, module.MARK), id=module.MARK)
        for module in discover().values()
        if hasattr(module, port)
    ]
