"""Finished answers of the hot reads (the connector lists, a connector's configuration), kept as
the bytes sent and answered again while the store says the org's data has not changed.

Why an answer is never served after the commit that changed it, from this process or another:
before building an answer, the cache reads the store's change stamp (its version, then the
org's); the answer is kept under those numbers. A later request reads the store version again
(cheap: no I/O wait, see :class:`~connector_core.ports.change_stamp.ChangeStamp`) and
answers from the cache only when it is the same, or when the org's own version is the same
(commits since were other orgs'). Every commit that changes an org's connectors or tokens
changes both numbers, in the same transaction, whichever process made it; a commit during the
build leaves the kept answer under numbers already outdated. When the stamp cannot be read,
nothing is served from or kept in the cache.

Answers also lapse after ``ttl_seconds``: a list shows time-derived fields (a refresh
token's warning), which change without a commit.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import JSONResponse

from connector_core.ports.change_stamp import ChangeStamp

__all__ = ["ResponseCache"]


class _Entry:
    __slots__ = ("body", "built_at", "expires", "org", "store")

    def __init__(self, body: bytes, store: int, org: int, expires: float, built_at: float) -> None:
        self.body = body
        self.store = store
        self.org = org
        self.expires = expires
        self.built_at = built_at


class ResponseCache:
    """JSON answers by (org, name), bounded to ``max_entries`` (the oldest goes first)."""

    def __init__(
        self,
        stamp: ChangeStamp,
        *,
        ttl_seconds: float = 1.0,
        max_entries: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """An answer lapses ``ttl_seconds`` after it was built by ``monotonic``, and also when
        ``clock`` (the service's clock, in seconds: what time-derived fields are computed from)
        moved that far from its reading then, either way (a test's manual clock, a stepped
        wall clock)."""
        self._stamp = stamp
        self._ttl = ttl_seconds
        self._max = max_entries
        self._now = monotonic
        self._clock = clock or monotonic
        self._entries: dict[tuple[str, str], _Entry] = {}
        #: answers served from the cache, and built (for tests and the benchmark)
        self.hits = 0
        self.misses = 0

    async def answer(self, org_id: str, name: str, build: Callable[[], Awaitable[Any]]) -> bytes:
        """The JSON bytes of ``await build()`` for the org, or those kept from an earlier build
        when nothing the org reads has changed since."""
        key = (org_id, name)
        store = self._stamp.store_version()
        org: int | None = None
        entry = self._entries.get(key)
        if store is not None and entry is not None and self._fresh(entry):
            if entry.store == store:
                self.hits += 1
                return entry.body
            org = self._stamp.org_version(org_id)
            if org is not None and org == entry.org:
                entry.store = store  # the commits since were other orgs'
                self.hits += 1
                return entry.body
        elif store is not None:
            org = self._stamp.org_version(org_id)
        # the stamps are read before the data: a commit from here on outdates what is kept
        expires, built_at = self._now() + self._ttl, self._clock()
        body = bytes(JSONResponse(await build()).body)
        self.misses += 1
        if store is not None and org is not None:
            if key not in self._entries and len(self._entries) >= self._max:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = _Entry(body, store, org, expires, built_at)
        return body

    def _fresh(self, entry: _Entry) -> bool:
        return entry.expires > self._now() and abs(self._clock() - entry.built_at) < self._ttl

    def __repr__(self) -> str:
        return f"ResponseCache(entries={len(self._entries)}, ttl_seconds={self._ttl:g})"
