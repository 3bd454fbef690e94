"""Read-through JSON cache for hot, per-organisation reads (connector lists, configuration).

Keys. Every cached value's key holds two random tokens read in one round trip: the org's
*generation* (``rc:gen:<org>``) and the cache-wide *epoch* (``rc:epoch``). Deleting an org's
generation makes everything cached for that org unreachable at once (:meth:`invalidate_org`);
deleting the epoch does the same for every org. The next reader makes a new random token.

Why a value is never served stale after a write returned (e.g. ``isEnabled`` after a toggle):

1. A reader fixes the tokens **before** it reads the source (:meth:`org_key`), and caches what
   it read under those tokens only. A missing token is replaced by a fresh random one first.
2. A writer invalidates **after** its write is committed, with :meth:`Cache.delete`, which
   raises when it could not confirm (``Cache.set`` is best effort, so the invalidation is a
   delete, not "set a new token").
3. So a reader that read the source before the write fixed a token the invalidation removed;
   tokens are random and never come back, and what that reader caches is never read again.

When the cache is unwell (a call failed or timed out) it is a **breaker**: this process stops
using it at once (reads go to the source, writes skip the invalidation) instead of paying a
timeout per call, and a background task probes it with backoff. The probe deletes the epoch, so
the cache comes back *empty*: whatever was cached before the outage — including values a write
during the outage could not invalidate, here or in a process that never noticed the outage — is
unreachable before this process uses the cache again. A write whose invalidation fails is still
a saved write (:mod:`adapters.invalidating_uow` reports success); the breaker makes sure no
reader is served the old state by this process, and the epoch delete on recovery reaches the
others.

Generic over the :class:`~connector_core.ports.cache.Cache` port: Redis in production, the
in-memory cache in a single process.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, TypeVar
from urllib.parse import quote

from attrs import frozen
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_exponential

from connector_core.errors import ConnectorManagerError, Unavailable
from connector_core.ports.cache import Cache

__all__ = ["OrgKey", "ReadThroughCache"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_EPOCH: Final = "rc:epoch"
_GEN: Final = "rc:gen:"
_DATA: Final = "rc:data:"


@frozen
class OrgKey:
    """A cache key bound to the tokens current when it was made (see the module doc)."""

    org_id: str
    name: str
    cache_key: str


class ReadThroughCache:
    """JSON values cached for ``ttl_seconds``, invalidated per organisation, bypassed while the
    cache is unwell.

    Use :meth:`get_or_load` or, to keep control of the load, the same steps by hand::

        key = await cache.org_key(org_id, "connectors:active")   # before reading the source
        value = await cache.get_json(key)
        if value is None:
            value = await load()
            await cache.set_json(key, value)

    (:meth:`org_key` raises :class:`Unavailable` while the cache is bypassed: read the source)
    and after every committed write that changes what an org's reads return::

        await cache.invalidate_org(org_id)   # raises Unavailable when it could not invalidate
    """

    def __init__(
        self,
        cache: Cache,
        ttl_seconds: float = 30,
        *,
        generation_ttl_seconds: float = 86_400,
        probe_max_interval: float = 1.0,
    ) -> None:
        self._cache = cache
        self._ttl = ttl_seconds
        # outlives the values under it; when it lapses anyway, the next reader starts a new one
        self._gen_ttl = max(generation_ttl_seconds, ttl_seconds)
        self._probe_max_interval = probe_max_interval
        self._probe: asyncio.Task[None] | None = None
        # orgs with a commit of unknown outcome, and the tasks that release them once settled
        self._held: dict[str, int] = {}
        self._holds: set[asyncio.Task[None]] = set()

    @property
    def ttl_seconds(self) -> float:
        return self._ttl

    @property
    def bypassed(self) -> bool:
        """True while the cache is unwell: reads go to the source, nothing is cached."""
        return self._probe is not None

    @property
    def holding(self) -> frozenset[str]:
        """The orgs kept out of the cache until a commit of unknown outcome is settled."""
        return frozenset(self._held)

    @staticmethod
    def _gen_key(org_id: str) -> str:
        return _GEN + quote(org_id, safe="")

    # -- the breaker -----------------------------------------------------------------------------

    def _trip(self, exc: ConnectorManagerError) -> None:
        """Stop using the cache and start probing it (once per outage)."""
        if self._probe is not None:
            return
        log.warning("read cache bypassed, reading through to the source: %s", exc.message)
        # A context of its own: the request that noticed must not lend its deadline to the probe.
        self._probe = asyncio.get_running_loop().create_task(
            self._recover(), name="read cache: probe", context=contextvars.Context()
        )

    async def _recover(self) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(ConnectorManagerError),
            wait=wait_exponential(multiplier=0.05, max=self._probe_max_interval),
            stop=stop_never,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                # Everything cached before (or during) the outage becomes unreachable for every
                # process before this one reads from the cache again.
                await self._cache.delete(_EPOCH)
        self._probe = None
        log.info("read cache in use again; what it held before the outage was dropped")

    # -- commits of unknown outcome ---------------------------------------------------------------

    def hold(self, org_ids: Iterable[str], settled: Callable[[], Awaitable[None]] | None) -> None:
        """A commit touching these orgs may or may not have been stored, and may still land
        (the store hung mid-commit): their reads bypass the cache until ``settled()`` returns
        (the outcome is final), then the orgs are invalidated, so what was cached before is
        never served after the commit landed late."""
        orgs = sorted(set(org_ids))
        for org in orgs:
            self._held[org] = self._held.get(org, 0) + 1
        task = asyncio.get_running_loop().create_task(
            self._release(orgs, settled), name="read cache: hold", context=contextvars.Context()
        )
        self._holds.add(task)
        task.add_done_callback(self._holds.discard)

    async def _release(self, orgs: Sequence[str], settled: Callable[[], Awaitable[None]] | None) -> None:
        try:
            if settled is not None:
                await settled()
            for org in orgs:
                with contextlib.suppress(Unavailable):  # then the cache is bypassed and comes back empty
                    await self.invalidate_org(org)
        finally:
            for org in orgs:
                self._held[org] -= 1
                if not self._held[org]:
                    del self._held[org]

    def _bypassed_for(self, org_id: str) -> bool:
        return self._probe is not None or org_id in self._held

    async def aclose(self) -> None:
        """Stop probing and holding (a cache left bypassed stays so)."""
        tasks = [t for t in (self._probe, *self._holds) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- reads -------------------------------------------------------------------------------------

    async def org_key(self, org_id: str, name: str) -> OrgKey:
        """The key for ``name`` under the current tokens; call it *before* reading the source.
        :class:`Unavailable` while the cache is bypassed (for this org)."""
        if self._bypassed_for(org_id):
            raise Unavailable("the read cache is bypassed while it recovers", metadata={"dependency": "cache"})
        gen_key = self._gen_key(org_id)
        try:
            epoch, gen = await self._cache.get_many(_EPOCH, gen_key)
            # best effort: if these sets are lost, the value below is cached under tokens nobody
            # reads; if another reader's token replaced one, the same
            if epoch is None:
                epoch = secrets.token_hex(8)
                await self._cache.set(_EPOCH, epoch, self._gen_ttl)
            if gen is None:
                gen = secrets.token_hex(8)
                await self._cache.set(gen_key, gen, self._gen_ttl)
        except ConnectorManagerError as exc:
            self._trip(exc)
            raise Unavailable("the read cache cannot be asked", metadata={"dependency": "cache"}) from exc
        return OrgKey(org_id, name, f"{_DATA}{quote(org_id, safe='')}:{epoch}:{gen}:{quote(name, safe='')}")

    async def get_json(self, key: OrgKey) -> Any | None:
        """The cached value, or None on a miss (a cached JSON ``null`` also reads as a miss, and
        so does anything while the cache is bypassed)."""
        if self._bypassed_for(key.org_id):
            return None
        try:
            raw = await self._cache.get(key.cache_key)
        except ConnectorManagerError as exc:
            self._trip(exc)
            return None
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:  # not ours or truncated: a miss is always correct
            return None

    async def set_json(self, key: OrgKey, value: Any) -> None:
        """Cache ``value`` (JSON-serialisable) under ``key``'s tokens; best effort."""
        if value is None or self._bypassed_for(key.org_id):
            return
        try:
            await self._cache.set(key.cache_key, json.dumps(value, separators=(",", ":")), self._ttl)
        except ConnectorManagerError as exc:
            self._trip(exc)

    async def get_or_load(self, org_id: str, name: str, load: Callable[[], Awaitable[T]]) -> T:
        """The cached value, else ``await load()`` cached. ``load`` must return JSON-compatible data
        that survives a round trip (dicts, lists, str, int, float, bool): a hit is the decoded copy.
        While the cache is bypassed, simply ``await load()``."""
        try:
            key = await self.org_key(org_id, name)
        except Unavailable:
            return await load()
        hit = await self.get_json(key)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        value = await load()
        await self.set_json(key, value)
        return value

    # -- writes ------------------------------------------------------------------------------------

    async def invalidate_org(self, org_id: str) -> None:
        """Make every value cached for the org unreachable. Call it after the write committed.
        While the cache is bypassed there is nothing to do: it comes back empty. Raises
        :class:`Unavailable` when the cache could not confirm (the cache is bypassed from then
        on, so this process serves nothing stale either way)."""
        if self._probe is not None:
            return
        try:
            await self._cache.delete(self._gen_key(org_id))
        except ConnectorManagerError as exc:
            self._trip(exc)
            raise Unavailable(
                "the read cache could not be invalidated; it is bypassed until it recovers",
                metadata={"dependency": "cache"},
            ) from exc

    def __repr__(self) -> str:
        return f"ReadThroughCache(ttl_seconds={self._ttl:g}, bypassed={self.bypassed})"
