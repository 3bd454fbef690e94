"""A client that trickles its request body is answered 408 once the body deadline passes,
through a real uvicorn server on a socket (ASGI test transports buffer the body)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from entrypoints.bootstrap import build_container
from entrypoints.http.app import create_app
from entrypoints.http.auth import issue_user_token
from entrypoints.settings import load_settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[int, str]]:
    settings = load_settings(env={}, storage="memory", secrets="memory", data_dir=tmp_path)
    container = await build_container(settings, env={})
    app = create_app(container, body_timeout_seconds=0.5)
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        await asyncio.sleep(0.01)
    token = issue_user_token(
        container.service_secrets.jwt_secret,
        user_id="u",
        org_id="org-a",
        email="u@example.com",
        admin=True,
        ttl=600,
        now=int(time.time()),
    )
    try:
        yield port, token
    finally:
        srv.should_exit = True
        await task
        await container.aclose()


async def _trickle(port: int, head: bytes, body: bytes) -> bytes:
    """Send the head, then the body one byte at a time, until the server answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        answer = asyncio.create_task(reader.read(65536))
        for byte in body:
            done, _ = await asyncio.wait({answer}, timeout=0.1)
            if done:
                break
            writer.write(bytes([byte]))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        return await asyncio.wait_for(answer, timeout=30)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_trickling_body_gets_408(server: tuple[int, str], declared: bool) -> None:
    port, token = server
    body = json.dumps({"baseUrl": "https://acme.example", "filters": {"x": "y" * 200}}).encode()
    framing = f"Content-Length: {len(body)}" if declared else "Transfer-Encoding: chunked"
    head = (
        f"PUT /api/v1/connectors/config/jira HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()
    if not declared:
        body = b"".join(b"1\r\n" + bytes([b]) + b"\r\n" for b in body) + b"0\r\n\r\n"
    answer = await _trickle(port, head, body)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:300]
    payload = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert payload["error"]["code"] == "REQUEST_TIMEOUT"
    assert "seconds" in payload["error"]["message"]
