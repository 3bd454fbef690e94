"""The OAuth client keeps its connections to a token endpoint: a batch of refreshes at a
concurrency above httpx's default keep-alive count (20) reuses the connections it opened
instead of reconnecting (httpcore closed an idle connection whenever the pool held more than
that many in all)."""

from __future__ import annotations

import asyncio

from adapters.http.oauth_client import HttpxOAuthClient
from connector_core.catalog import OAuthSpec
from connector_core.ports.oauth_provider import ClientCredentials

WIDTH = 30  # requests in flight at once: above the default keep-alive count of 20
BODY = b'{"access_token": "a", "token_type": "Bearer", "expires_in": 3600}'


class TokenEndpoint:
    """Answers every request once ``WIDTH`` requests are waiting (so all are in flight
    together); counts the connections it accepted."""

    def __init__(self) -> None:
        self.connections = 0
        self.waiting = 0
        self.all_in = asyncio.Event()
        self.open = 0
        self.all_closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.lower().split(b"\r\n")
                        if line.startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.waiting += 1
                if self.waiting == WIDTH:
                    self.all_in.set()
                await self.all_in.wait()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(BODY), BODY)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection
        finally:
            writer.close()
            await writer.wait_closed()
            self.open -= 1
            if self.open == 0:
                self.all_closed.set()

    def next_wave(self) -> None:
        self.waiting = 0
        self.all_in = asyncio.Event()


async def test_a_wide_batch_reuses_its_connections() -> None:
    endpoint = TokenEndpoint()
    server = await asyncio.start_server(endpoint.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    spec = OAuthSpec(authorize_url="http://127.0.0.1:1/authorize", token_url=f"http://127.0.0.1:{port}/token")
    credentials = ClientCredentials(client_id="cid", client_secret="sec")
    client = HttpxOAuthClient(timeout=10)
    try:
        for _ in range(3):
            endpoint.next_wave()
            answers = await asyncio.gather(
                *(client.refresh(spec, credentials, refresh_token=f"r{i}") for i in range(WIDTH))
            )
            assert all(a["access_token"] == "a" for a in answers)
        assert endpoint.connections == WIDTH
    finally:
        await client.aclose()
        await endpoint.all_closed.wait()  # every handler done before the loop goes
        server.close()
        await server.wait_closed()
