"""One deadline per request: adapters wait at most what is left of it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from attrs import evolve

from adapters.memory import MemoryStorage, MemoryUnitOfWork
from adapters.unit_of_work_base import BufferedUnitOfWork
from connector_core.deadline import MIN_WAIT_SECONDS, REQUEST_BUDGET_SECONDS, deadline, remaining
from connector_core.errors import Unavailable
from connector_core.ports.unit_of_work import UnitOfWork
from entrypoints.bootstrap import build_container
from entrypoints.http.app import create_app
from entrypoints.http.auth import issue_user_token
from entrypoints.settings import load_settings


def test_without_a_deadline_a_call_waits_its_own_timeout() -> None:
    assert remaining(2.0) == 2.0


def test_a_deadline_cuts_every_call_to_what_is_left() -> None:
    with deadline(1.0):
        assert 0.9 < remaining(2.0) <= 1.0
        assert remaining(0.5) == 0.5  # a shorter timeout of its own stays
    assert remaining(2.0) == 2.0  # and it ends with the block


def test_past_the_deadline_a_call_still_gets_the_minimum() -> None:
    with deadline(0.0):
        time.sleep(0.01)
        assert remaining(2.0) == MIN_WAIT_SECONDS


def test_an_inner_deadline_never_extends_the_outer_one() -> None:
    with deadline(0.5):
        with deadline(10.0):
            assert remaining(5.0) <= 0.5
        with deadline(0.3):
            assert remaining(5.0) <= 0.3


async def test_the_deadline_follows_the_request_into_its_tasks_and_no_further() -> None:
    async def seen() -> float:
        return remaining(9.0)

    with deadline(1.0):
        inside = await asyncio.create_task(seen())
    outside = await asyncio.create_task(seen())
    assert inside <= 1.0 and outside == 9.0


class HangingUnitOfWork(MemoryUnitOfWork):
    """Storage that hangs the way a real adapter does under a frozen server: it waits as long
    as its timeout allows (30 s of its own, cut by the request's deadline), then gives up."""

    async def __aenter__(self) -> BufferedUnitOfWork:
        await asyncio.sleep(remaining(30.0))
        raise Unavailable("storage did not answer")


def hanging_unit_of_work() -> UnitOfWork:
    return HangingUnitOfWork(MemoryStorage())


async def test_every_http_request_carries_one_deadline_for_its_dependency_calls(tmp_path: Path) -> None:
    settings = load_settings(env={}, storage="memory", secrets="memory", data_dir=tmp_path)
    env = {"CM_MASTER_KEY": "test-master-key"}
    healthy = await build_container(settings, env=env)
    container = await build_container(settings, env=env, storage=evolve(healthy.storage, uow=hanging_unit_of_work))
    token = issue_user_token(
        container.service_secrets.jwt_secret,
        user_id="u",
        org_id="o",
        email="u@example.com",
        admin=True,
        ttl=600,
        now=int(time.time()),
    )
    transport = httpx.ASGITransport(app=create_app(container))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        # bounded by pytest's own timeout: without the request's deadline this waits 30 s
        async with asyncio.timeout(REQUEST_BUDGET_SECONDS + 5):
            r = await client.get("/api/v1/connectors/", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "SERVICE_UNAVAILABLE", r.text
    await container.aclose()
    await healthy.aclose()
