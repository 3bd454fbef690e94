"""Reload configuration when it changes in etcd (another instance, an operator, a migration).

:class:`EtcdConfigWatcher` watches a key prefix and calls ``on_change`` once a burst of changes
has settled (``debounce``, 100 ms by default; at most ``max_delay`` after the first change of a
burst, so a steady stream of writes cannot starve the reload). It never raises into the app:

- the watch runs on one member of the cluster (the member in use, :mod:`adapters.etcd.members`);
  while it runs, that member is asked for its status every ``check_interval`` seconds: a member
  that froze (its stream just goes quiet) or died is marked suspect, and the watch moves to
  another member at once;
- when etcd goes away it re-subscribes at once and then with exponential backoff (with jitter,
  tenacity), logging a warning once per outage; after a re-subscription that followed a failure
  it calls ``on_change`` once, because changes made while it was disconnected were not seen;
- an exception from ``on_change`` is logged and the watcher carries on.

Every change under the prefix counts, this process's own writes included: telling them apart
would need a writer id in every value, and a reload is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_random_exponential

from adapters.etcd.kv_store import EtcdOps
from adapters.etcd.members import EtcdMember, EtcdMembers, status
from connector_core.errors import ConnectorManagerError

__all__ = ["EtcdConfigWatcher"]

log = logging.getLogger(__name__)


class EtcdConfigWatcher:
    """Watch ``prefix`` and call ``on_change`` (debounced) when something under it changes."""

    def __init__(
        self,
        members: EtcdMembers,
        prefix: str,
        on_change: Callable[[], Awaitable[None]],
        *,
        debounce: float = 0.1,
        max_delay: float = 1.0,
        initial_backoff: float = 0.2,
        max_backoff: float = 5.0,
        check_interval: float = 1.0,
    ) -> None:
        if not prefix:
            raise ValueError("an empty prefix would watch the whole cluster")
        self._ops = EtcdOps(members)
        self._check_interval = check_interval
        self._member: EtcdMember | None = None
        self._prefix = prefix
        self._on_change = on_change
        self._debounce = debounce
        self._max_delay = max_delay
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._dirty = asyncio.Event()
        self._watching = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._watch: Any = None
        self._outage_logged = False  # a failure was logged and the watch not restored since
        self.reloads = 0  # how many times on_change completed (for health pages and tests)

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    @property
    def watching(self) -> bool:
        """True while subscribed (changes are being seen)."""
        return self._watching.is_set()

    async def wait_watching(self) -> None:
        """Return once subscribed (bound it with ``asyncio.timeout``)."""
        await self._watching.wait()

    def start(self) -> None:
        """Start watching in background tasks (idempotent). Needs a running event loop."""
        if self.running:
            return
        self._tasks = [
            asyncio.create_task(self._watch_loop(), name=f"etcd-watch {self._prefix}"),
            asyncio.create_task(self._notify_loop(), name=f"etcd-reload {self._prefix}"),
        ]

    async def stop(self) -> None:
        """Stop watching and wait for the tasks to end (idempotent; an in-flight reload is cancelled)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._cancel_watch()
        self._watching.clear()

    async def __aenter__(self) -> EtcdConfigWatcher:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- watching ----------------------------------------------------------------------------

    async def _subscribe(self) -> Any:
        members = self._ops.members
        watch = await self._ops.call("watch", lambda c: c.watch_prefix(self._prefix.encode()))
        self._member = members.current  # the member that answered is the one in use
        return watch

    async def _follow(self) -> None:
        """Read the stream until it breaks; raise when it ends or its member stops answering."""
        follower = asyncio.create_task(self._read_stream(), name=f"etcd-watch-stream {self._prefix}")
        try:
            while not follower.done():
                await asyncio.wait({follower}, timeout=self._check_interval)
                member = self._member
                if follower.done() or member is None:
                    break
                if member.suspect or not await status(member.client, self._ops.members.member_timeout):
                    self._ops.members.suspect(member, "the watch's member stopped answering")
                    raise ConnectionResetError("the watch's member stopped answering")
            await follower
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await follower

    async def _read_stream(self) -> None:
        async with self._ops.translated("watch"):
            async for _event in self._watch:
                self._dirty.set()
        # the stream ended without an error (client closed): subscribe again
        raise ConnectionResetError("watch stream ended")

    async def _cancel_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            # the stream may already be gone; cancelling is only tidying up
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._ops.members.member_timeout):
                    await watch.cancel()

    async def _watch_loop(self) -> None:
        """Subscribe (retried with jittered exponential backoff while etcd is away), follow the
        stream until it breaks, and again. Never raises but CancelledError."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_random_exponential(multiplier=self._initial_backoff, max=self._max_backoff),
            stop=stop_never,
            before_sleep=lambda state: self._lost(state.outcome.exception() if state.outcome else None),
        )
        while True:
            self._watch = await retrying(self._subscribe)
            self._watching.set()
            if self._outage_logged:  # a failure came before: say it is over
                log.warning("etcd watch on %r restored; reloading configuration", self._prefix)
                self._dirty.set()  # changes made while disconnected were missed
                self._outage_logged = False
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the watcher die: log, subscribe again
                self._watching.clear()
                await self._cancel_watch()
                self._lost(exc)

    def _lost(self, exc: BaseException | None) -> None:
        """Log the first failure of an outage (subscribing or following the stream)."""
        if self._outage_logged:
            return
        self._outage_logged = True
        reason = exc.message if isinstance(exc, ConnectorManagerError) else type(exc).__name__
        log.warning("etcd watch on %r lost (%s); retrying with backoff", self._prefix, reason)

    async def _notify_loop(self) -> None:
        while True:
            await self._dirty.wait()
            first = time.monotonic()
            # debounce: wait until no change arrived for `debounce`, or `max_delay` passed
            while True:
                self._dirty.clear()
                await asyncio.sleep(self._debounce)
                if not self._dirty.is_set() or time.monotonic() - first >= self._max_delay:
                    break
            self._dirty.clear()
            try:
                await self._on_change()
                self.reloads += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = exc.message if isinstance(exc, ConnectorManagerError) else type(exc).__name__
                log.error("configuration reload after an etcd change failed: %s", reason)
                log.debug("configuration reload failure", exc_info=True)

    def __repr__(self) -> str:
        return f"EtcdConfigWatcher(prefix={self._prefix!r}, watching={self.watching})"
