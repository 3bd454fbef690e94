"""An httpx transport whose connection pool costs the same however many of its connections idle.

httpcore 1.0's pool, each time it assigns a request or a response is closed (twice per
request), asks every pooled connection ``has_expired()``, which for an *idle* connection is
two system calls through anyio (``getpeername``, ``poll``: has the server closed it?), and
counts all connections once per idle one (quadratic). A refresher whose workers spend part of
each refresh in their store steps keeps most of its connections idle, so that bookkeeping was
a quarter of its CPU time, twice what a loop of bare requests pays.

:class:`LeanConnectionPool` keeps httpcore's policy (first available connection reused, a new
one opened below ``max_connections``, an idle one replaced at the limit, surplus idle ones
closed above ``max_keepalive_connections``) and changes when the costly check runs: on the idle
connection about to be handed a request (so a request never goes to a connection the server
closed), and on one more idle connection per assignment, taken in turn (a cursor that goes
round the idle ones), so every connection the server closed or whose keep-alive lapsed leaves
the pool within as many assignments as there are idle connections, even while every request
goes to another origin. Busy connections are checked as before (no system call).

A connection handed to a request that has not started on it yet (its task has not run since)
still looks idle and available to httpcore. httpcore hands it to the next queued requests too:
all but one of them then fail on it (``ConnectionNotAvailable``) and go round the pool again,
each time with the checks above. When many requests start at one moment (a refresher batch
whose store step returned for many tokens at once) that was 4-5 assignments per request instead
of one. Here such a connection counts as taken (HTTP/1.1: one request per connection) until
its request is done with it.

It overrides one internal method of httpcore 1.0 (``_assign_requests_to_connections``);
:func:`lean_transport` falls back to httpx's own transport when that method is not there, and
``tests/integration/test_lean_pool.py`` fails when the override stops being used.
"""

from __future__ import annotations

import urllib.request

import httpcore
import httpx

from adapters.http.asyncio_backend import AsyncioBackend

__all__ = ["LeanConnectionPool", "lean_mounts", "lean_transport"]

_OVERRIDDEN = "_assign_requests_to_connections"


class LeanConnectionPool(httpcore.AsyncConnectionPool):
    #: which idle connection the next assignment checks fully (modulo their number)
    _sweep = 0

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        live: list[httpcore.AsyncConnectionInterface] = []
        idle: list[httpcore.AsyncConnectionInterface] = []
        # HTTP/1.1: a connection handed to a request that has not started on it yet still looks
        # idle; it is that request's, not free (see the module's docstring)
        taken = set() if self._http2 else {id(r.connection) for r in self._requests if r.connection is not None}
        for connection in self._connections:
            if connection.is_closed():
                continue
            if id(connection) in taken:
                pass
            elif connection.is_idle():
                idle.append(connection)
            elif connection.has_expired():  # not idle: no system call
                closing.append(connection)
                continue
            live.append(connection)
        # one idle connection is checked fully, each in turn: stale ones leave one by one
        if idle:
            turn = self._sweep % len(idle)
            self._sweep = turn + 1
            if idle[turn].has_expired():
                self._drop(idle.pop(turn), live, closing)
        # surplus idle connections close, first ones first (as httpcore does)
        while idle and len(live) > self._max_keepalive_connections:
            self._drop(idle.pop(0), live, closing)

        for pool_request in [request for request in self._requests if request.is_queued()]:
            origin = pool_request.request.url.origin
            chosen = self._available(origin, live, closing, taken)
            if chosen is None and len(live) >= self._max_connections:
                spare = next((c for c in live if id(c) not in taken and c.is_idle()), None)
                if spare is not None:
                    self._drop(spare, live, closing)
            if chosen is None and len(live) < self._max_connections:
                chosen = self.create_connection(origin)
                live.append(chosen)
            if chosen is not None:
                pool_request.assign_to_connection(chosen)
                if not self._http2:
                    taken.add(id(chosen))
        self._connections = live
        return closing

    @staticmethod
    def _available(
        origin: httpcore.Origin,
        live: list[httpcore.AsyncConnectionInterface],
        closing: list[httpcore.AsyncConnectionInterface],
        taken: set[int],
    ) -> httpcore.AsyncConnectionInterface | None:
        """The first connection that can take a request for ``origin`` and is not ``taken``;
        an idle one is checked first (the server may have closed it), and dropped when it has
        expired."""
        for connection in list(live):
            if id(connection) in taken or not (connection.can_handle_request(origin) and connection.is_available()):
                continue
            if connection.is_idle() and connection.has_expired():
                LeanConnectionPool._drop(connection, live, closing)
                continue
            return connection
        return None

    @staticmethod
    def _drop(
        connection: httpcore.AsyncConnectionInterface,
        live: list[httpcore.AsyncConnectionInterface],
        closing: list[httpcore.AsyncConnectionInterface],
    ) -> None:
        live.remove(connection)
        closing.append(connection)


def lean_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport (TLS verified as by default, no proxy: mount it where no proxy
    applies) with a :class:`LeanConnectionPool` on asyncio's own streams
    (:class:`~adapters.http.asyncio_backend.AsyncioBackend`); httpx's own pool when this
    httpcore has no method to override."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    pool = getattr(transport, "_pool", None)
    if type(pool) is not httpcore.AsyncConnectionPool or not hasattr(pool, _OVERRIDDEN):
        return transport
    transport._pool = LeanConnectionPool(
        ssl_context=pool._ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncioBackend(),
    )
    return transport


def lean_mounts(limits: httpx.Limits) -> dict[str, httpx.AsyncBaseTransport]:
    """``mounts`` for an :class:`httpx.AsyncClient` that trusts the environment: every request
    that no proxy setting of the environment routes elsewhere goes through :func:`lean_transport`.

    httpx mounts the environment's proxies first and ``mounts`` over them: ``HTTP_PROXY``,
    ``HTTPS_PROXY`` and ``NO_PROXY`` are more specific patterns than ``all://`` and still win,
    but ``ALL_PROXY`` is mounted at ``all://`` itself. With it set, no lean mount: httpx's own
    proxy transport serves what the proxy takes, its default transport what ``NO_PROXY`` names."""
    if urllib.request.getproxies().get("all"):
        return {}
    return {"all://": lean_transport(limits)}
