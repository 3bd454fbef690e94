"""Health from real checks; a failing dependency is a clear 503."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from attrs import evolve

from adapters.health import NamedCheck
from adapters.memory import MemoryStorage, MemoryUnitOfWork
from adapters.unit_of_work_base import BufferedUnitOfWork
from connector_core.errors import Unavailable
from connector_core.ports.unit_of_work import UnitOfWork
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


class BrokenUnitOfWork(MemoryUnitOfWork):
    """A unit of work whose storage cannot be reached."""

    async def __aenter__(self) -> BufferedUnitOfWork:
        raise Unavailable("storage is unreachable")


def broken_unit_of_work() -> UnitOfWork:
    return BrokenUnitOfWork(MemoryStorage())


async def test_storage_down_is_503_with_a_clear_message(tmp_path: Path) -> None:
    settings = load_settings(env={}, storage="memory", secrets="memory", data_dir=tmp_path)
    env = {"CM_MASTER_KEY": "test-master-key"}
    healthy = await build_container(settings, env=env)
    broken_storage = evolve(healthy.storage, uow=broken_unit_of_work)
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
