"""A unit of work that invalidates the read cache of every org it changed, once its commit
stored the change (see :mod:`adapters.read_cache` for why readers are then never served the
old state)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType

from adapters.read_cache import ReadThroughCache
from connector_core.errors import CommitOutcomeUnknown, Unavailable
from connector_core.model.connector import Connector
from connector_core.ports.connector_repository import ConnectorRepository
from connector_core.ports.outbox import Outbox
from connector_core.ports.token_store import TokenStore
from connector_core.ports.unit_of_work import UnitOfWork
from connector_core.tokens import TokenCensus, TokenRecord, TokenSummary

__all__ = ["InvalidatingUnitOfWork", "invalidating"]

log = logging.getLogger(__name__)


class _RecordingConnectors:
    """The inner repository, noting which orgs a unit of work writes."""

    def __init__(self, inner: ConnectorRepository, touched: set[str]) -> None:
        self._inner = inner
        self._touched = touched

    async def get(self, org_id: str, key: str) -> Connector | None:
        return await self._inner.get(org_id, key)

    async def list(self, org_id: str, *, enabled: bool | None = None) -> Sequence[Connector]:
        return await self._inner.list(org_id, enabled=enabled)

    async def add(self, connector: Connector) -> None:
        self._touched.add(connector.org_id)
        await self._inner.add(connector)

    async def save(self, connector: Connector) -> None:
        self._touched.add(connector.org_id)
        await self._inner.save(connector)


class _RecordingTokens:
    """The inner token store, noting which orgs a unit of work writes: the connector list
    shows each connector's token (its times and status), so a write of a token alone (a
    refresh, a rest after a failure, an expiry notice) changes what the org reads too."""

    def __init__(self, inner: TokenStore, touched: set[str]) -> None:
        self._inner = inner
        self._touched = touched

    async def get(self, token_id: str) -> TokenRecord | None:
        return await self._inner.get(token_id)

    async def get_for_connector(self, org_id: str, connector_key: str) -> TokenRecord | None:
        return await self._inner.get_for_connector(org_id, connector_key)

    async def due_before(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        return await self._inner.due_before(moment, limit)

    async def expired_unnotified(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        return await self._inner.expired_unnotified(moment, limit)

    async def warnings_due(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        return await self._inner.warnings_due(moment, limit)

    async def summaries(self, org_id: str) -> Sequence[TokenSummary]:
        return await self._inner.summaries(org_id)

    async def census(self, now: datetime) -> TokenCensus:
        return await self._inner.census(now)

    async def add(self, record: TokenRecord) -> None:
        self._touched.add(record.org_id)
        await self._inner.add(record)

    async def save(self, record: TokenRecord) -> None:
        self._touched.add(record.org_id)
        await self._inner.save(record)

    async def delete(self, record: TokenRecord) -> None:
        self._touched.add(record.org_id)
        await self._inner.delete(record)


class InvalidatingUnitOfWork:
    """Wraps a unit of work so that every committed connector or token change invalidates the
    cached reads of its org before ``commit`` returns — whichever use case made the change (a
    toggle, an OAuth callback, a refresh, the refresher marking re-authentication).

    ``commit`` reports what happened to the data: once the inner commit stored it, ``commit``
    returns normally. An invalidation that fails is its own outcome, logged: the cache is then
    bypassed until it recovers (and comes back empty), so nobody is served the old state. A
    commit of unknown outcome keeps its orgs out of the cache until the store settled it
    (:meth:`ReadThroughCache.hold`)."""

    def __init__(self, inner: UnitOfWork, cache: ReadThroughCache) -> None:
        self._inner = inner
        self._cache = cache
        self._touched: set[str] = set()
        self.connectors: ConnectorRepository = _RecordingConnectors(inner.connectors, self._touched)
        self.tokens: TokenStore = _RecordingTokens(inner.tokens, self._touched)
        self.outbox: Outbox = inner.outbox

    async def __aenter__(self) -> InvalidatingUnitOfWork:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._touched.clear()
        await self._inner.__aexit__(exc_type, exc, tb)

    async def commit(self) -> None:
        touched = set(self._touched)
        self._touched.clear()
        try:
            await self._inner.commit()
        except CommitOutcomeUnknown as exc:
            if touched:  # it may land later: keep those orgs out of the cache until it is settled
                self._cache.hold(touched, exc.settled)
            raise
        for org_id in sorted(touched):
            try:
                await self._cache.invalidate_org(org_id)
            except Unavailable as exc:
                log.warning("a change was saved but the read cache could not be invalidated: %s", exc.message)


def invalidating(factory: Callable[[], UnitOfWork], cache: ReadThroughCache) -> Callable[[], UnitOfWork]:
    """A unit-of-work factory whose units invalidate ``cache`` on commit."""

    def make() -> UnitOfWork:
        return InvalidatingUnitOfWork(factory(), cache)

    return make
