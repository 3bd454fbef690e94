"""With ``backend_url`` set, the connector routes act as the old service's proxy: after local
authentication they forward to the backend connector service (a real HTTP fake here)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from entrypoints.bootstrap import Container, build_container
from entrypoints.http.app import create_app
from entrypoints.http.auth import issue_user_token
from entrypoints.settings import load_settings
from tests.fakes.backend import FakeBackend

P = "/api/v1/connectors"


@pytest.fixture
def backend() -> Iterator[FakeBackend]:
    fake = FakeBackend().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
async def proxied(backend: FakeBackend, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Container]]:
    env = {"CM_MASTER_KEY": "proxy-tests"}
    settings = load_settings(
        env=env,
        storage="memory",
        secrets="memory",
        data_dir=tmp_path,
        backend_url=backend.base_url,
        backend_timeout_seconds=2.0,
    )
    container = await build_container(settings, env=env)
    app = create_app(container)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cm") as client:
        yield client, container
    await container.aclose()


def admin(container: Container) -> dict[str, str]:
    token = issue_user_token(
        container.service_secrets.jwt_secret,
        user_id="u",
        org_id="acme",
        email="u@acme.example",
        admin=True,
        ttl=600,
        now=int(time.time()),
    )
    return {"Authorization": f"Bearer {token}"}


async def test_routes_are_forwarded_with_only_auth_and_content_type(
    proxied: tuple[httpx.AsyncClient, Container], backend: FakeBackend
) -> None:
    client, container = proxied
    backend.respond(200, {"connectors": ["from-backend"]})
    headers = {**admin(container), "X-Private": "do-not-forward", "Cookie": "session=1"}
    r = await client.get(f"{P}/", headers=headers)
    assert r.status_code == 200 and r.json() == {"connectors": ["from-backend"]}
    r = await client.put(f"{P}/config/jira", json={"baseUrl": "https://x.example"}, headers=headers)
    assert r.status_code == 200
    sent = backend.requests
    assert [(q.method, q.path) for q in sent[-2:]] == [("GET", f"{P}/"), ("PUT", f"{P}/config/jira")]
    for q in sent[-2:]:
        assert q.headers["authorization"] == headers["Authorization"]
        assert "x-private" not in q.headers and "cookie" not in q.headers
    assert sent[-1].headers["content-type"] == "application/json"
    assert b"https://x.example" in sent[-1].body


async def test_authentication_happens_before_forwarding(
    proxied: tuple[httpx.AsyncClient, Container], backend: FakeBackend
) -> None:
    client, _ = proxied
    r = await client.get(f"{P}/")
    assert r.status_code == 401
    assert backend.requests == []


@pytest.mark.parametrize(
    ("backend_status", "ours"),
    [(400, 400), (401, 401), (403, 403), (404, 404), (409, 409), (422, 400), (418, 500), (500, 500)],
)
async def test_backend_statuses_are_mapped(
    proxied: tuple[httpx.AsyncClient, Container], backend: FakeBackend, backend_status: int, ours: int
) -> None:
    client, container = proxied
    backend.respond(backend_status, {"message": "backend says no"})
    r = await client.post(f"{P}/toggle/jira", headers=admin(container))
    assert r.status_code == ours
    assert r.json()["error"]["message"] == "backend says no"


async def test_unreachable_backend_is_503_with_the_old_message(
    proxied: tuple[httpx.AsyncClient, Container], backend: FakeBackend
) -> None:
    client, container = proxied
    backend.stop()
    r = await client.get(f"{P}/active", headers=admin(container))
    assert r.status_code == 503
    assert r.json()["error"]["message"] == (
        "Connector Service is currently unavailable. Please check your network connection or try again later."
    )


async def test_transient_backend_failures_are_retried_for_reads(
    proxied: tuple[httpx.AsyncClient, Container], backend: FakeBackend
) -> None:
    client, container = proxied
    backend.respond(200, {"ok": True})
    backend.fail_next(2)
    r = await client.get(f"{P}/config/jira", headers=admin(container))
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert len(backend.requests_to(f"{P}/config/jira")) == 3


async def test_health_reports_the_backend(proxied: tuple[httpx.AsyncClient, Container], backend: FakeBackend) -> None:
    client, _ = proxied
    r = await client.get("/api/v1/health")
    assert r.status_code == 200 and r.json()["services"]["connectorBackend"] == "healthy"
    backend.healthy(False)
    r = await client.get("/api/v1/health")
    assert r.status_code == 503 and r.json()["services"]["connectorBackend"] == "unhealthy"


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_backend_answer_that_cannot_be_decoded_is_503_not_500(
    proxied: tuple[httpx.AsyncClient, Container], backend: FakeBackend, method: str
) -> None:
    client, container = proxied
    backend.respond(200, b"this is not gzip", content_encoding="gzip")
    r = await client.request(method, f"{P}/filters/confluence", headers=admin(container), json={"filterOptions": {}})
    assert r.status_code == 503, r.text
    assert r.json()["error"]["message"].startswith("Connector Service is currently unavailable")
