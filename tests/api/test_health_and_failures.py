"""Health from real checks; a failing dependency is a clear 503."""

from __future__ import annotations

import asyncio

import httpx
from attrs import evolve

from adapters.health import NamedCheck
from connector_core.errors import Unavailable
from entrypoints.bootstrap import build_container
from entrypoints.http.app import AppHolder, create_app
from entrypoints.settings import load_settings
from tests.api.conftest import Api

P = "/api/v1/connectors"


async def test_health_reports_each_dependency(api: Api) -> None:
    r = await api.client.get("/api/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy" and body["services"] == {"storage": "healthy"}
    assert body["timestamp"].endswith("Z")


async def test_health_is_503_when_a_required_dependency_is_down(api: Api) -> None:
    async def down() -> bool:
        return False

    async def hangs() -> bool:
        await asyncio.sleep(30)
        return True

    api.container.health_checks.append(NamedCheck("eventBroker", True, down))
    api.container.health_checks.append(NamedCheck("cache", False, hangs))
    holder = api.container.holder
    assert isinstance(holder, AppHolder)
    holder.state.health_timeout = 0.2
    r = await api.client.get("/api/v1/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unhealthy"
    assert body["services"] == {
        "storage": "healthy",
        "eventBroker": "unhealthy",
        "cache": "unhealthy",
    }


class BrokenUnitOfWork:
    async def __aenter__(self):  # type: ignore[no-untyped-def]
        raise Unavailable("storage is unreachable")

    async def __aexit__(self, *exc):  # type: ignore[no-untyped-def]
        return None


async def test_storage_down_is_503_with_a_clear_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(env={}, storage="memory", secrets="memory", data_dir=tmp_path)
    env = {"CM_MASTER_KEY": "test-master-key"}
    healthy = await build_container(settings, env=env)
    broken_storage = evolve(healthy.storage, uow=BrokenUnitOfWork)
    container = await build_container(settings, env=env, storage=broken_storage)
    app = create_app(container)
    from tests.api.conftest import Api as ApiT

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        api = ApiT(c, container)
        r = await c.get(f"{P}/", headers=api.admin)
        assert r.status_code == 503
        assert r.json()["error"] == {
            "code": "SERVICE_UNAVAILABLE",
            "message": "storage is unreachable",
        }
        r = await c.post(f"{P}/toggle/jira", headers=api.admin)
        assert r.status_code == 503
