"""An httpcore network backend on asyncio's own streams, for the provider calls of the refresher.

httpcore's default backend on asyncio goes through anyio: every read and write of a response
opens an anyio cancel scope (``fail_after``), which asks sniffio which library runs (a task
lookup each time), and every check of an idle connection (``is_readable``) builds anyio's
typed-attribute table of the socket. In a refresher batch that bookkeeping was a fifth of the
event loop's thread, more than this service's own work per token. Here the same operations are
asyncio's: ``asyncio.timeout`` around a ``StreamReader.read`` / ``StreamWriter.drain``, and the
transport's socket read from its extra info (one dict lookup) for the same ``poll`` httpcore
does to learn whether the server closed an idle connection.

The contract is httpcore's :class:`~httpcore.AsyncNetworkBackend`, errors included: a timeout is
``ConnectTimeout`` / ``ReadTimeout`` / ``WriteTimeout``, a failing socket ``ConnectError`` /
``ReadError`` / ``WriteError``, and httpx maps those as for its own backend (so a provider that
does not answer is still a timeout to :mod:`adapters.http.oauth_client`). TLS is asyncio's
(``StreamWriter.start_tls``) with the SSL context httpx made (certificates verified as by
default). asyncio only (uvloop included): the service runs on nothing else.
``tests/integration/test_asyncio_backend.py`` runs it against real servers (plain and TLS, an
untrusted certificate, timeouts, refused connections, a TLS server that never answers a close);
``tests/integration/test_lean_pool.py`` through the pool (a server that closes idle connections).
"""

# ruff: noqa: ASYNC109  (the timeout parameters are httpcore's interface)
from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
from httpcore._utils import is_socket_readable

__all__ = ["AsyncioBackend", "AsyncioStream"]

#: how long asyncio waits for one address of a host before trying the next (RFC 8305's
#: recommended 250 ms, what anyio does for httpcore's default backend)
_HAPPY_EYEBALLS_DELAY = 0.25

#: httpcore's names of a connection's details -> asyncio's
_EXTRA_INFO = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername", "socket": "socket"}

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection: an asyncio reader and writer pair."""

    __slots__ = ("_reader", "_writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)  # b"" once the server closed it
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc) or "timed out reading the response") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()  # at once unless the socket's buffer is full
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc) or "timed out sending the request") from exc
        except (OSError, RuntimeError) as exc:  # RuntimeError: written after the transport closed
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        if self._writer.get_extra_info("ssl_object") is not None:
            # A TLS close would send close_notify and keep the socket until the server answers
            # one (up to asyncio's 30 s shutdown timeout): many providers and load balancers
            # never do. httpcore's default backend does not wait for it either.
            self._writer.transport.abort()
        else:
            self._writer.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._writer.close()
            raise httpcore.ConnectTimeout(str(exc) or "timed out in the TLS handshake") from exc
        except (OSError, ssl.SSLError) as exc:  # ssl.SSLError is an OSError; named for the reader
            self._writer.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # an idle connection with something to read: the server closed it
            return is_socket_readable(self._writer.get_extra_info("socket"))
        name = _EXTRA_INFO.get(info)
        return None if name is None else self._writer.get_extra_info(name)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connections opened with :func:`asyncio.open_connection` (TCP_NODELAY set, as asyncio does)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=local, happy_eyeballs_delay=_HAPPY_EYEBALLS_DELAY
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return _with_options(AsyncioStream(reader, writer), writer, socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[SocketOption] | None = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or "timed out connecting to the socket") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return _with_options(AsyncioStream(reader, writer), writer, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _with_options(
    stream: AsyncioStream, writer: asyncio.StreamWriter, options: Iterable[SocketOption] | None
) -> AsyncioStream:
    try:
        sock = writer.get_extra_info("socket")
        for option in options or ():
            sock.setsockopt(*option)
    except OSError as exc:
        writer.close()
        raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
    return stream
