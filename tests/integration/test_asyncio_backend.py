"""The provider calls' HTTP stack (adapters.http.asyncio_backend, adapters.http.provider_client)
against real local servers: plain and TLS (a certificate checked, an untrusted one refused),
timeouts and refused connections reported as httpx reports them, and no cookie carried from one
answer to the next request."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.http.asyncio_backend import AsyncioBackend
from adapters.http.oauth_client import POOL_LIMITS, HttpxOAuthClient
from adapters.http.provider_client import ProviderHttpClient
from connector_core.catalog import OAuthSpec
from connector_core.errors import RetryableProviderError
from connector_core.ports.oauth_provider import ClientCredentials

TOKEN = b'{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-2"}'


class Server:
    """Answers every request on kept-alive connections with ``answer``; records each request's
    head; ``silent`` answers nothing (the client's read times out)."""

    def __init__(
        self, answer: bytes, *, ssl_context: ssl.SSLContext | None = None, silent: bool = False, deaf: bool = False
    ) -> None:
        self.answer, self.ssl_context, self.silent, self.deaf = answer, ssl_context, silent, deaf
        self.heads: list[bytes] = []
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for writer in self._writers:  # a deaf or silent one is still open
            writer.transport.abort()
        await asyncio.sleep(0.01)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = next(
                    (int(h.split(b":", 1)[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")),
                    0,
                )
                await reader.readexactly(length)
                if self.silent:
                    await asyncio.sleep(30)
                writer.write(self.answer)
                await writer.drain()
                if self.deaf:
                    writer.transport.pause_reading()  # type: ignore[attr-defined]  # a socket transport reads too
                    await asyncio.sleep(30)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def _answer(body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Type: application/json", b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _certificate(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
async def tls_server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[tuple[Server, Path]]:
    cert_file, key_file = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    deaf = getattr(request, "param", False)
    async with Server(_answer(b'{"ok":true}'), ssl_context=context, deaf=deaf) as server:
        yield server, cert_file


def _pool(ssl_context: ssl.SSLContext | None = None) -> httpcore.AsyncConnectionPool:
    return httpcore.AsyncConnectionPool(ssl_context=ssl_context, network_backend=AsyncioBackend())


async def test_the_provider_client_sends_on_the_asyncio_backend() -> None:
    client = ProviderHttpClient(timeout=5, limits=POOL_LIMITS)
    try:
        pool = client._transport_for_url(httpx.URL("https://login.example/"))._pool  # type: ignore[attr-defined]
        assert isinstance(pool._network_backend, AsyncioBackend)
    finally:
        await client.aclose()


async def test_plain_requests_reuse_one_connection() -> None:
    async with Server(_answer(b'{"ok":true}')) as server, _pool() as pool:
        for _ in range(3):
            response = await pool.request("POST", f"http://127.0.0.1:{server.port}/token", content=b"a=b")
            assert response.status == 200 and response.content == b'{"ok":true}'
        assert len(server.heads) == 3
        assert len(pool.connections) == 1


async def test_tls_with_a_trusted_certificate(tls_server: tuple[Server, Path]) -> None:
    server, cert_file = tls_server
    context = ssl.create_default_context(cafile=str(cert_file))
    async with _pool(context) as pool:
        response = await pool.request("POST", f"https://localhost:{server.port}/token", content=b"a=b")
        assert response.status == 200 and response.content == b'{"ok":true}'
        (connection,) = pool.connections
        assert connection._connection._network_stream.get_extra_info("ssl_object") is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize("tls_server", [True], indirect=True)
async def test_a_closed_tls_connection_lets_its_socket_go_at_once(tls_server: tuple[Server, Path]) -> None:
    # the server never answers the close (close_notify): the socket must not wait for it
    server, cert_file = tls_server
    async with _pool(ssl.create_default_context(cafile=str(cert_file))) as pool:
        response = await pool.request("POST", f"https://localhost:{server.port}/token", content=b"a=b")
        assert response.status == 200
        (connection,) = pool.connections
        sock = connection._connection._network_stream.get_extra_info("socket")  # type: ignore[attr-defined]
        assert sock.fileno() >= 0
    await asyncio.sleep(0.2)
    assert sock.fileno() == -1


async def test_tls_with_an_untrusted_certificate_is_refused(tls_server: tuple[Server, Path]) -> None:
    server, _ = tls_server
    async with _pool(ssl.create_default_context()) as pool:
        with pytest.raises(httpcore.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await pool.request("POST", f"https://localhost:{server.port}/token", content=b"a=b")
    assert server.heads == []  # nothing was sent


async def test_a_silent_server_is_a_read_timeout() -> None:
    async with Server(b"", silent=True) as server, _pool() as pool:
        with pytest.raises(httpcore.ReadTimeout):
            await pool.request(
                "POST", f"http://127.0.0.1:{server.port}/token", content=b"a=b", extensions={"timeout": {"read": 0.2}}
            )


async def test_a_refused_connection_is_a_connect_error_and_a_provider_timeout_is_retryable() -> None:
    async with Server(b"") as server:
        port = server.port
    async with _pool() as pool:
        with pytest.raises(httpcore.ConnectError):
            await pool.request("POST", f"http://127.0.0.1:{port}/token", content=b"a=b")
    async with Server(b"", silent=True) as silent, HttpxOAuthClient(timeout=0.2) as oauth:
        spec = OAuthSpec(authorize_url="http://127.0.0.1/a", token_url=f"http://127.0.0.1:{silent.port}/token")
        with pytest.raises(RetryableProviderError) as raised:
            await oauth.refresh(spec, ClientCredentials("cid", "secret"), refresh_token="rt-1")
        assert raised.value.metadata["reason"] == "timeout"


async def test_no_cookie_of_one_answer_goes_with_the_next_request() -> None:
    answer = _answer(TOKEN, b"Set-Cookie: stsservicecookie=org-a-session; Path=/; HttpOnly")
    async with Server(answer) as server, HttpxOAuthClient(timeout=5) as oauth:
        jar = oauth._http.cookies  # whatever is set or merged into it is dropped too
        jar["set"] = "x"
        jar.set("named", "y", domain="127.0.0.1")
        jar.update({"merged": "z"})
        spec = OAuthSpec(authorize_url="http://127.0.0.1/a", token_url=f"http://127.0.0.1:{server.port}/token")
        for refresh_token in ("rt-org-a", "rt-org-b"):
            tokens = await oauth.refresh(spec, ClientCredentials("cid", "secret"), refresh_token=refresh_token)
            assert tokens["access_token"] == "at-1"
        assert len(server.heads) == 2
        assert all(b"cookie" not in head.lower().replace(b"set-cookie", b"") for head in server.heads)
        assert not oauth._http.cookies
