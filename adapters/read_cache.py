"""Read-through JSON cache for hot, per-organisation reads (connector lists, configuration).

Invalidation is per organisation and uses a *generation*: every cached value's key contains the
org's current generation token (``rc:gen:<org>``), and :meth:`ReadThroughCache.invalidate_org`
deletes that token. The next reader makes a new random one, so every value cached under the old
token becomes unreachable at once, in one round trip, whatever keys the org had.

Why this never serves a stale value after a write returned (e.g. ``isEnabled`` after a toggle):

1. A reader fixes the generation **before** it reads the source (:meth:`org_key`), and caches
   what it read under that generation only. When the org has no token yet, the reader stores a
   fresh random one first.
2. A writer invalidates **after** its write is committed, with :meth:`Cache.delete`, which raises
   when it could not confirm (``Cache.set`` is best effort and would fail silently, so the
   invalidation is a delete, not "set a new token").
3. So a reader that read the source before the write fixed a generation that was current before
   the invalidation; the invalidation removed it, tokens are random and never come back, and
   what that reader caches is never read again. A reader whose generation is fixed after the
   invalidation reads the source after the write.

Generic over the :class:`~connector_core.ports.cache.Cache` port: Redis in production, the
in-memory cache in a single process.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import quote

from attrs import frozen

from connector_core.errors import Unavailable
from connector_core.model.connector import Connector
from connector_core.ports.cache import Cache
from connector_core.ports.connector_repository import ConnectorRepository
from connector_core.ports.outbox import Outbox
from connector_core.ports.token_store import TokenStore
from connector_core.ports.unit_of_work import UnitOfWork

__all__ = ["InvalidatingUnitOfWork", "OrgKey", "ReadThroughCache", "invalidating"]

T = TypeVar("T")

_GEN: Final = "rc:gen:"
_DATA: Final = "rc:data:"


@frozen
class OrgKey:
    """A cache key bound to the org generation current when it was made (see the module doc)."""

    org_id: str
    name: str
    cache_key: str


class ReadThroughCache:
    """JSON values cached for ``ttl_seconds``, invalidated per organisation.

    Use :meth:`get_or_load` or, to keep control of the load, the same steps by hand::

        key = await cache.org_key(org_id, "connectors:active")   # before reading the source
        value = await cache.get_json(key)
        if value is None:
            value = await load()
            await cache.set_json(key, value)

    and after every committed write that changes what an org's reads return::

        await cache.invalidate_org(org_id)   # raises Unavailable when it could not invalidate
    """

    def __init__(self, cache: Cache, ttl_seconds: float = 30, *, generation_ttl_seconds: float = 86_400) -> None:
        self._cache = cache
        self._ttl = ttl_seconds
        # outlives the values under it; when it lapses anyway, the next reader starts a new one
        self._gen_ttl = max(generation_ttl_seconds, ttl_seconds)

    @property
    def ttl_seconds(self) -> float:
        return self._ttl

    @staticmethod
    def _gen_key(org_id: str) -> str:
        return _GEN + quote(org_id, safe="")

    async def org_key(self, org_id: str, name: str) -> OrgKey:
        """The key for ``name`` in the org's current generation; call it *before* reading the source."""
        gen = await self._cache.get(self._gen_key(org_id))
        if gen is None:
            gen = secrets.token_hex(8)
            # best effort: if this set is lost, the value below is cached under a generation
            # nobody reads; if another reader's token replaced it, the same
            await self._cache.set(self._gen_key(org_id), gen, self._gen_ttl)
        return OrgKey(org_id, name, f"{_DATA}{quote(org_id, safe='')}:{gen}:{quote(name, safe='')}")

    async def get_json(self, key: OrgKey) -> Any | None:
        """The cached value, or None on a miss (a cached JSON ``null`` also reads as a miss)."""
        raw = await self._cache.get(key.cache_key)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:  # not ours or truncated: a miss is always correct
            return None

    async def set_json(self, key: OrgKey, value: Any) -> None:
        """Cache ``value`` (JSON-serialisable) under ``key``'s generation; best effort."""
        if value is None:
            return
        await self._cache.set(key.cache_key, json.dumps(value, separators=(",", ":")), self._ttl)

    async def get_or_load(self, org_id: str, name: str, load: Callable[[], Awaitable[T]]) -> T:
        """The cached value, else ``await load()`` cached. ``load`` must return JSON-compatible data
        that survives a round trip (dicts, lists, str, int, float, bool): a hit is the decoded copy."""
        key = await self.org_key(org_id, name)
        hit = await self.get_json(key)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        value = await load()
        await self.set_json(key, value)
        return value

    async def invalidate_org(self, org_id: str) -> None:
        """Make every value cached for the org unreachable. Call it after the write committed.
        Raises :class:`~connector_core.errors.Unavailable` when the cache could not confirm."""
        await self._cache.delete(self._gen_key(org_id))

    def __repr__(self) -> str:
        return f"ReadThroughCache(ttl_seconds={self._ttl:g})"


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


class InvalidatingUnitOfWork:
    """Wraps a unit of work so that every committed connector change invalidates the cached
    reads of its org before ``commit`` returns — whichever use case made the change (a toggle,
    an OAuth callback, the refresher marking re-authentication). If the cache cannot confirm,
    ``commit`` raises :class:`Unavailable` after the change is stored: the caller learns that
    readers might see the old state, instead of a success that could be contradicted."""

    def __init__(self, inner: UnitOfWork, cache: ReadThroughCache) -> None:
        self._inner = inner
        self._cache = cache
        self._touched: set[str] = set()
        self.connectors: ConnectorRepository = _RecordingConnectors(inner.connectors, self._touched)
        self.tokens: TokenStore = inner.tokens
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
        await self._inner.commit()
        for org_id in sorted(touched):
            try:
                await self._cache.invalidate_org(org_id)
            except Unavailable as exc:
                raise Unavailable(
                    "the change was saved, but the cache could not be invalidated; readers may see the old "
                    "state until it expires",
                    metadata={"dependency": "cache"},
                ) from exc


def invalidating(factory: Callable[[], UnitOfWork], cache: ReadThroughCache) -> Callable[[], UnitOfWork]:
    """A unit-of-work factory whose units invalidate ``cache`` on commit."""

    def make() -> UnitOfWork:
        return InvalidatingUnitOfWork(factory(), cache)

    return make
