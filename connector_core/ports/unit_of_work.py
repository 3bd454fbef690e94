"""Unit of work port: one atomic change over connectors, tokens and the outbox."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from connector_core.ports.connector_repository import ConnectorRepository
from connector_core.ports.outbox import Outbox
from connector_core.ports.token_store import TokenStore


class UnitOfWork(Protocol):
    """``async with uow: ...; await uow.commit()``. Leaving the block without commit rolls
    back: no change and none of its events are stored. Reads inside see own writes."""

    connectors: ConnectorRepository
    tokens: TokenStore
    outbox: Outbox

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None:
        """Store every change and event atomically, or raise (:class:`Conflict`,
        :class:`Unavailable`) and store nothing."""
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork:
        """A fresh unit of work."""
        ...
