"""The OAuth client's lean connection pool (adapters.http.lean_pool) against a local HTTP/1.1
server: connections are reused, limits hold, and a connection the server closed is never
handed a request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpcore
import httpx
import pytest

from adapters.http.lean_pool import LeanConnectionPool, lean_mounts, lean_transport
from adapters.http.oauth_client import POOL_LIMITS, HttpxOAuthClient


class KeepAliveServer:
    """Answers every request ``ok`` after ``delay`` seconds on kept-alive connections; counts
    connections and can close the idle ones."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.opened = 0
        self.open_now = 0
        self.busy = 0
        self.peak_busy = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._idle: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def __aenter__(self) -> KeepAliveServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in list(self._writers):
            writer.close()
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    async def close_idle(self) -> None:
        for writer in list(self._idle):
            writer.close()
        await asyncio.sleep(0.05)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        self.open_now += 1
        self._writers.add(writer)
        self._idle.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self._idle.discard(writer)
                self.busy += 1
                self.peak_busy = max(self.peak_busy, self.busy)
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                self.busy -= 1
                self._idle.add(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            self._writers.discard(writer)
            self._idle.discard(writer)
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[KeepAliveServer]:
    async with KeepAliveServer(delay=0.01) as s:
        yield s


def _pool(client: httpx.AsyncClient) -> LeanConnectionPool:
    transport = client._transport_for_url(httpx.URL("http://127.0.0.1/"))
    pool = transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, LeanConnectionPool)
    return pool


async def test_the_oauth_client_sends_through_the_lean_pool() -> None:
    # the override is still a method of this httpcore's pool, and the owned client uses it
    assert hasattr(httpcore.AsyncConnectionPool, "_assign_requests_to_connections")
    oauth = HttpxOAuthClient()
    try:
        _pool(oauth._http)
    finally:
        await oauth.aclose()


async def test_connections_are_reused_and_the_first_ones_preferred(server: KeepAliveServer) -> None:
    async with httpx.AsyncClient(mounts=lean_mounts(POOL_LIMITS)) as client:
        answers = await asyncio.gather(*(client.post(server.url, data={"n": str(i)}) for i in range(10)))
        assert [a.text for a in answers] == ["ok"] * 10
        assert server.opened == 10
        for _ in range(20):
            assert (await client.post(server.url, data={"a": "b"})).text == "ok"
        assert server.opened == 10  # no new connection for the sequential ones
        assert len(_pool(client).connections) == 10


async def test_a_connection_the_server_closed_is_not_handed_a_request(server: KeepAliveServer) -> None:
    async with httpx.AsyncClient(mounts=lean_mounts(POOL_LIMITS)) as client:
        await asyncio.gather(*(client.post(server.url, data={}) for _ in range(5)))
        await server.close_idle()
        for _ in range(12):
            assert (await client.post(server.url, data={})).text == "ok"
        pool = _pool(client)
        # the stale ones left the pool, one per assignment at least
        assert all(not c.has_expired() for c in pool.connections)
        assert len(pool.connections) == 1


async def test_at_most_max_connections_open(server: KeepAliveServer) -> None:
    limits = httpx.Limits(max_connections=3, max_keepalive_connections=3)
    async with httpx.AsyncClient(mounts={"all://": lean_transport(limits)}) as client:
        answers = await asyncio.gather(*(client.post(server.url, data={}) for _ in range(12)))
        assert [a.text for a in answers] == ["ok"] * 12
        assert server.opened == 3
        assert server.peak_busy <= 3


async def test_surplus_idle_connections_close(server: KeepAliveServer) -> None:
    limits = httpx.Limits(max_connections=6, max_keepalive_connections=2)
    async with httpx.AsyncClient(mounts={"all://": lean_transport(limits)}) as client:
        await asyncio.gather(*(client.post(server.url, data={}) for _ in range(6)))
        assert (await client.post(server.url, data={})).text == "ok"
        assert len(_pool(client).connections) <= 2


async def test_expired_keepalive_connections_leave(server: KeepAliveServer) -> None:
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=10, keepalive_expiry=0.05)
    async with httpx.AsyncClient(mounts={"all://": lean_transport(limits)}) as client:
        await asyncio.gather(*(client.post(server.url, data={}) for _ in range(4)))
        await asyncio.sleep(0.1)
        for _ in range(6):
            assert (await client.post(server.url, data={})).text == "ok"
        assert len(_pool(client).connections) == 1


_PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)


@contextlib.asynccontextmanager
async def egress_proxy(monkeypatch: pytest.MonkeyPatch, no_proxy: str = "") -> AsyncIterator[list[bytes]]:
    """An HTTP proxy set as ``ALL_PROXY`` (nothing else in the environment): the request lines
    it was sent, each answered ``ok``."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append((await reader.readuntil(b"\r\n\r\n")).split(b"\r\n", 1)[0])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}")
    if no_proxy:
        monkeypatch.setenv("NO_PROXY", no_proxy)
    try:
        yield seen
    finally:
        proxy.close()
        await proxy.wait_closed()


async def test_the_oauth_client_goes_through_the_all_proxy_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with egress_proxy(monkeypatch) as seen:
        oauth = HttpxOAuthClient()
        try:
            # a provider reachable only through the egress proxy
            response = await oauth._http.post("http://provider.invalid/token", data={}, timeout=3)
        finally:
            await oauth.aclose()
    assert response.text == "ok"
    assert seen == [b"POST http://provider.invalid/token HTTP/1.1"]


async def test_no_proxy_still_goes_direct(monkeypatch: pytest.MonkeyPatch, server: KeepAliveServer) -> None:
    async with egress_proxy(monkeypatch, no_proxy="127.0.0.1") as seen:
        oauth = HttpxOAuthClient()
        try:
            response = await oauth._http.post(server.url, data={}, timeout=3)
        finally:
            await oauth.aclose()
    assert response.text == "ok"
    assert seen == []
    assert server.opened == 1


async def test_connections_one_provider_closed_leave_while_requests_go_to_another() -> None:
    async with KeepAliveServer(delay=0.01) as a, KeepAliveServer() as b:
        async with httpx.AsyncClient(mounts={"all://": lean_transport(POOL_LIMITS)}) as client:
            await asyncio.gather(*(client.post(a.url, data={}) for _ in range(10)))  # a burst to provider A
            await a.close_idle()  # A closes its idle keep-alive connections (CLOSE_WAIT here)
            for _ in range(30):  # from now on only provider B is called
                assert (await client.post(b.url, data={})).text == "ok"
            pool = _pool(client)
            assert [c for c in pool.connections if c.has_expired()] == []
            assert len(pool.connections) == 1  # B's


async def test_requests_starting_together_each_get_a_connection_of_their_own(
    server: KeepAliveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A connection handed to a request that has not started on it yet is that request's: a burst
    # of requests over idle connections is not handed one connection several times (all but one
    # then failing on it and going round the pool again).
    retried = 0
    clear = httpcore._async.connection_pool.AsyncPoolRequest.clear_connection

    def counting(request: httpcore._async.connection_pool.AsyncPoolRequest) -> None:
        nonlocal retried
        retried += 1
        clear(request)

    monkeypatch.setattr(httpcore._async.connection_pool.AsyncPoolRequest, "clear_connection", counting)
    async with httpx.AsyncClient(mounts=lean_mounts(POOL_LIMITS)) as client:
        await asyncio.gather(*(client.post(server.url, data={}) for _ in range(10)))  # 10 idle connections
        retried = 0
        for _ in range(3):
            answers = await asyncio.gather(*(client.post(server.url, data={}) for _ in range(10)))
            assert [a.text for a in answers] == ["ok"] * 10
        assert retried == 0
        assert server.opened == 10
        assert len(_pool(client).connections) == 10
