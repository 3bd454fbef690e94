"""The backend connector service client against a real HTTP fake: forwarding, retries, the
status mapping, and the unavailable error."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from adapters.http.backend_client import UNAVAILABLE_MESSAGE, HttpxBackendClient, map_backend_status
from connector_core.errors import Unavailable, ValidationError
from tests.fakes.backend import FakeBackend

TOKEN = "Bearer eyJ-very-secret-user-token"
EXACT_MESSAGE = "Connector Service is currently unavailable. Please check your network connection or try again later."


class Sleeps:
    """Records the backoff delays instead of sleeping them; can act on the n-th sleep."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.on_sleep: dict[int, object] = {}

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        action = self.on_sleep.get(len(self.delays))
        if callable(action):
            action()


@pytest.fixture
def backend() -> Iterator[FakeBackend]:
    with FakeBackend() as fake:
        yield fake


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_client(
    base_url: str, sleeps: Sleeps, *, timeout: float = 2.0, check_timeout: float = 2.0
) -> HttpxBackendClient:
    return HttpxBackendClient(base_url, timeout=timeout, backoff_base=0.4, sleep=sleeps, check_timeout=check_timeout)


@pytest.fixture
async def client(backend: FakeBackend, sleeps: Sleeps) -> AsyncIterator[HttpxBackendClient]:
    c = make_client(backend.base_url, sleeps)
    yield c
    await c.aclose()


async def test_forwards_method_path_query_body_and_only_two_headers(
    client: HttpxBackendClient, backend: FakeBackend
) -> None:
    response = await client.forward(
        "post",
        "/api/v1/connectors/confluence/filters",
        headers={
            "authorization": TOKEN,
            "Content-Type": "application/json",
            "Cookie": "session=abc",
            "X-Forwarded-For": "10.0.0.1",
            "X-Api-Key": "k-123",
            "Host": "evil.example",
        },
        body=b'{"filterOptions":{"spaces":["A"]}}',
        query={"orgId": "o1", "q": "a b&c"},
    )
    assert response.status == 200
    assert response.content_type == "application/json"
    (req,) = backend.requests
    assert req.method == "POST"
    assert req.path == "/api/v1/connectors/confluence/filters"
    assert req.query == {"orgId": "o1", "q": "a b&c"}
    assert req.body == b'{"filterOptions":{"spaces":["A"]}}'
    assert req.headers["authorization"] == TOKEN
    assert req.headers["content-type"] == "application/json"
    for dropped in ("cookie", "x-forwarded-for", "x-api-key"):
        assert dropped not in req.headers
    assert req.headers["host"] == f"127.0.0.1:{backend.port}"
    assert b'"path": "/api/v1/connectors/confluence/filters"' in response.body


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "OPTIONS"])
async def test_idempotent_requests_are_retried_on_5xx(
    client: HttpxBackendClient, backend: FakeBackend, sleeps: Sleeps, method: str
) -> None:
    backend.fail_next(2, status=502)
    response = await client.forward(method, "/x", headers={"Authorization": TOKEN})
    assert response.status == 200
    assert [r.method for r in backend.requests] == [method] * 3
    # exponential backoff with jitter: in [d/2, d] for d = 0.4, 0.8
    assert 0.2 <= sleeps.delays[0] <= 0.4
    assert 0.4 <= sleeps.delays[1] <= 0.8
    assert all(r.headers["authorization"] == TOKEN for r in backend.requests)


async def test_5xx_after_three_attempts_is_returned_as_answered(
    client: HttpxBackendClient, backend: FakeBackend, sleeps: Sleeps
) -> None:
    backend.fail_next(10)
    response = await client.forward("GET", "/x", headers={})
    assert response.status == 503
    assert map_backend_status(response.status) == 500
    assert len(backend.requests) == 3
    assert len(sleeps.delays) == 2


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_non_idempotent_requests_are_not_retried_on_5xx(
    client: HttpxBackendClient, backend: FakeBackend, sleeps: Sleeps, method: str
) -> None:
    backend.fail_next(1)
    response = await client.forward(method, "/x", headers={}, body=b"{}")
    assert response.status == 503
    assert len(backend.requests) == 1
    assert sleeps.delays == []


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_connection_refused_is_retried_for_every_method(sleeps: Sleeps, method: str) -> None:
    backend = FakeBackend().start()
    backend.stop()  # the port is free again: connections are refused
    late = FakeBackend(port=backend.port)
    sleeps.on_sleep[2] = late.start  # the backend comes up during the second backoff
    client = make_client(backend.base_url, sleeps)
    try:
        response = await client.forward(method, "/y", headers={"Authorization": TOKEN}, body=b"{}")
        assert response.status == 200
        assert len(sleeps.delays) == 2
        assert [r.method for r in late.requests] == [method]  # refused twice, then answered
    finally:
        await client.aclose()
        late.stop()


async def test_unreachable_backend_is_unavailable_with_the_known_message(
    sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = FakeBackend().start()
    backend.stop()
    client = make_client(backend.base_url, sleeps)
    try:
        with pytest.raises(Unavailable) as info:
            await client.forward("POST", "/z", headers={"Authorization": TOKEN}, body=b'{"secret":"s3"}')
    finally:
        await client.aclose()
    assert str(info.value) == EXACT_MESSAGE == UNAVAILABLE_MESSAGE
    assert info.value.code == "SERVICE_UNAVAILABLE"
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(sleeps.delays) == 2  # 3 attempts
    assert "eyJ" not in caplog.text and "s3" not in caplog.text
    assert "eyJ" not in repr(info.value) and "eyJ" not in str(info.value.metadata)


async def test_a_dropped_connection_is_retried_only_when_idempotent(
    client: HttpxBackendClient, backend: FakeBackend, sleeps: Sleeps
) -> None:
    backend.close_next(1)
    assert (await client.forward("GET", "/a", headers={})).status == 200
    assert len(backend.requests) == 2

    backend.reset()
    backend.close_next(1)
    with pytest.raises(Unavailable, match=r"^Connector Service is currently unavailable\."):
        await client.forward("POST", "/a", headers={}, body=b"{}")
    assert len(backend.requests) == 1  # it may have acted: not repeated


async def test_slow_answers_time_out_and_are_retried_when_idempotent(backend: FakeBackend, sleeps: Sleeps) -> None:
    backend.slow(0.6)
    client = make_client(backend.base_url, sleeps, timeout=0.15)
    try:
        with pytest.raises(Unavailable):
            await client.forward("GET", "/slow", headers={})
        assert len(backend.requests_to("/slow")) == 3
        with pytest.raises(Unavailable):
            await client.forward("POST", "/slow-post", headers={}, body=b"{}")
        assert len(backend.requests_to("/slow-post")) == 1
    finally:
        await client.aclose()


@pytest.mark.parametrize("status", [200, 201, 204, 400, 401, 403, 404, 409, 422, 429, 500])
async def test_statuses_are_returned_as_answered(client: HttpxBackendClient, backend: FakeBackend, status: int) -> None:
    body = b"" if status == 204 else b'{"error":{"message":"from backend"}}'
    backend.respond(status, body)
    response = await client.forward("POST", "/s", headers={}, body=b"{}")
    assert response.status == status
    assert response.body == body
    assert len(backend.requests) == 1


@pytest.mark.parametrize(
    ("status", "ours"),
    [
        (200, 200),
        (201, 201),
        (302, 302),
        (400, 400),
        (401, 401),
        (403, 403),
        (404, 404),
        (409, 409),
        (422, 400),
        (405, 500),
        (418, 500),
        (429, 500),
        (500, 500),
        (502, 500),
        (503, 500),
    ],
)
def test_map_backend_status(status: int, ours: int) -> None:
    assert map_backend_status(status) == ours


async def test_check(backend: FakeBackend, sleeps: Sleeps) -> None:
    client = make_client(backend.base_url, sleeps, check_timeout=0.2)
    try:
        assert await client.check() is True
        assert backend.requests_to("/health")
        backend.healthy(False)
        assert await client.check() is False
        backend.healthy(True)
        backend.respond(404, b"", path="/health")  # no health route: the root answers
        assert await client.check() is True
        assert backend.requests_to("/")
        backend.respond(200, b"ok", path="/health")
        backend.slow(1.0)
        assert await client.check() is False  # too slow is down
        backend.slow(0)
        backend.stop()
        assert await client.check() is False
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "path",
    ["http://evil.example/x", "//evil.example/x", "x", "/a/../b", "/a/%2e%2e/b", "/a\\b", "/a b", "/a?x=1", ""],
)
async def test_paths_that_could_leave_the_backend_are_refused(
    client: HttpxBackendClient, backend: FakeBackend, path: str
) -> None:
    with pytest.raises(ValidationError):
        await client.forward("GET", path, headers={"Authorization": TOKEN})
    assert backend.requests == []


async def test_a_given_client_is_not_closed(backend: FakeBackend, sleeps: Sleeps) -> None:
    async with httpx.AsyncClient() as shared:
        client = HttpxBackendClient(backend.base_url + "/", client=shared, sleep=sleeps)
        assert (await client.forward("GET", "/p", headers={})).status == 200
        await client.aclose()
        assert not shared.is_closed
        assert backend.requests[0].path == "/p"  # no double slash from the base URL


def test_rejects_a_base_url_that_is_not_http() -> None:
    with pytest.raises(ValueError):
        HttpxBackendClient("ftp://backend")
    with pytest.raises(ValueError):
        HttpxBackendClient("backend:8080")


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_an_answer_that_cannot_be_decoded_is_unavailable(
    client: HttpxBackendClient, backend: FakeBackend, method: str
) -> None:
    """Not a TransportError (httpx.DecodingError): translated like every other httpx error."""
    backend.respond(200, b"this is not gzip", content_encoding="gzip")
    with pytest.raises(Unavailable) as info:
        await client.forward(method, "/garbled", headers={}, body=b"{}")
    assert str(info.value) == UNAVAILABLE_MESSAGE
    assert info.value.metadata["reason"] == "DecodingError"
    assert isinstance(info.value.__cause__, httpx.DecodingError)
    assert len(backend.requests) == 1  # the backend answered: nothing to gain from asking again


async def test_too_many_redirects_and_bad_urls_are_unavailable(backend: FakeBackend, sleeps: Sleeps) -> None:
    async def redirect_loop(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": str(request.url)})

    async with httpx.AsyncClient(transport=httpx.MockTransport(redirect_loop), follow_redirects=True) as shared:
        client = HttpxBackendClient("http://backend.invalid", client=shared, sleep=sleeps)
        with pytest.raises(Unavailable) as info:
            await client.forward("GET", "/loop", headers={})
        assert isinstance(info.value.__cause__, httpx.TooManyRedirects)
    async with httpx.AsyncClient() as shared:
        client = HttpxBackendClient(backend.base_url, client=shared, sleep=sleeps)
        with pytest.raises(Unavailable) as info:
            await client.forward("GET", "/x", headers={"Authorization": "Bearer \x00bad"})
        assert info.value.metadata["reason"] in {"LocalProtocolError", "InvalidURL", "UnsupportedProtocol"}
