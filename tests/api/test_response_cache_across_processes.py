"""The hot reads' finished answers (entrypoints.http.response_cache) on the embedded default,
SQLite: several service processes share the file, and none of them may answer a connector as
enabled, or with a token, after the commit that changed it was made by ANOTHER one."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from connector_core.services.connectors import ConfigUpdate
from connector_core.tokens import TokenRecord, TokenSet
from entrypoints.bootstrap import Container, build_container
from entrypoints.http.app import create_app
from entrypoints.http.auth import issue_user_token
from entrypoints.http.response_cache import ResponseCache
from entrypoints.settings import load_settings
from tests.cli import run_cli

pytestmark = pytest.mark.sqlite

CONFLUENCE = ConfigUpdate(
    base_url="https://acme.atlassian.net",
    auth={"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": "PLANTED-API-TOKEN"},
    sync={},
    filters={},
)


class Instance:
    """One service instance on the shared data dir: its own container, connections and app."""

    def __init__(self, container: Container, client: httpx.AsyncClient) -> None:
        self.container = container
        self.client = client

    @property
    def responses(self) -> ResponseCache:
        cache = self.client._transport.app.state.holder.current().responses  # type: ignore[attr-defined]
        assert cache is not None, "SQLite can tell when an answer is outdated: the cache is on"
        return cache  # type: ignore[no-any-return]

    def headers(self, org: str) -> dict[str, str]:
        token = issue_user_token(
            self.container.service_secrets.jwt_secret,
            user_id="admin",
            org_id=org,
            email="admin@acme.example",
            admin=True,
            ttl=600,
            now=int(time.time()),
        )
        return {"Authorization": f"Bearer {token}"}

    async def active(self, org: str) -> list[str]:
        r = await self.client.get("/api/v1/connectors/active", headers=self.headers(org))
        assert r.status_code == 200, r.text
        return [c["key"] for c in r.json()]

    async def listed(self, org: str, key: str) -> dict[str, object]:
        r = await self.client.get("/api/v1/connectors/", headers=self.headers(org))
        assert r.status_code == 200, r.text
        return next(c for c in r.json() if c["key"] == key)

    async def config(self, org: str, key: str) -> dict[str, object]:
        r = await self.client.get(f"/api/v1/connectors/config/{key}", headers=self.headers(org))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    done = run_cli("token", "--data-dir", str(data), "--init", "--scoped")
    assert done.returncode == 0, done.stderr
    return data


async def instance(data_dir: Path, env: dict[str, str] | None = None) -> AsyncIterator[Instance]:
    settings = load_settings(env=env or {}, data_dir=data_dir)
    assert settings.storage == "sqlite", "the embedded default"
    container = await build_container(settings, env={})
    transport = httpx.ASGITransport(app=create_app(container), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Instance(container, client)
    finally:
        await container.aclose()


@pytest.fixture
async def a(data_dir: Path) -> AsyncIterator[Instance]:
    async for one in instance(data_dir):
        yield one


@pytest.fixture
async def b(data_dir: Path) -> AsyncIterator[Instance]:
    async for one in instance(data_dir):
        yield one


async def test_a_connector_disabled_by_another_process_is_never_served_as_enabled(b: Instance, data_dir: Path) -> None:
    def cm(*args: str) -> None:
        done = run_cli("connectors", *args, "--org", "acme", "--data-dir", str(data_dir))
        assert done.returncode == 0, done.stderr

    body = data_dir.parent / "confluence.json"
    body.write_text(
        '{"baseUrl": "https://acme.atlassian.net", "auth": {"authType": "API_TOKEN",'
        ' "email": "ops@acme.example", "apiToken": "PLANTED"}}',
        encoding="utf-8",
    )
    cm("configure", "confluence", "--file", str(body))
    cm("enable", "confluence")
    assert await b.active("acme") == ["confluence"]
    hits = b.responses.hits
    assert await b.active("acme") == ["confluence"]
    assert b.responses.hits == hits + 1, "the second read is answered from the cache"

    cm("disable", "confluence")  # another OS process, its own connection to the file

    assert await b.active("acme") == []
    assert (await b.config("acme", "confluence"))["isEnabled"] is False


async def test_a_toggle_in_one_instance_is_seen_at_once_by_the_other(a: Instance, b: Instance) -> None:
    await a.container.connectors.update_configuration("acme", "admin", "confluence", CONFLUENCE)
    await a.container.connectors.set_enabled("acme", "admin", "confluence", True)
    for _ in range(2):
        assert await b.active("acme") == ["confluence"]
        assert (await b.config("acme", "confluence"))["isEnabled"] is True
    assert b.responses.hits >= 2

    r = await a.client.post("/api/v1/connectors/toggle/confluence", json={"enabled": False}, headers=a.headers("acme"))
    assert r.status_code == 200, r.text

    assert await b.active("acme") == []
    assert (await b.config("acme", "confluence"))["isEnabled"] is False


async def test_a_token_forgotten_in_one_instance_is_no_longer_listed_by_the_other(a: Instance, b: Instance) -> None:
    ctx = a.container.ctx
    await a.container.connectors.update_configuration("acme", "admin", "confluence", CONFLUENCE)
    now = ctx.clock.now()
    record = TokenRecord.create(
        token_id=ctx.ids.new_id(),
        org_id="acme",
        connector_key="confluence",
        account_id="admin",
        service_type="CONFLUENCE",
        tokens=TokenSet(access_token="PLANTED-ACCESS", obtained_at=now, expires_at=now + timedelta(hours=1)),
        lifecycle=ctx.lifecycle,
        now=now,
        ids=ctx.ids,
    )
    async with ctx.uow() as uow:
        await uow.tokens.add(record)
        await uow.commit()
    for _ in range(2):
        assert (await b.listed("acme", "confluence"))["token"] is not None
    hits = b.responses.hits

    async with ctx.uow() as uow:
        stored = await uow.tokens.get_for_connector("acme", "confluence")
        assert stored is not None
        await uow.tokens.delete(stored)
        await uow.commit()

    assert (await b.listed("acme", "confluence"))["token"] is None
    assert b.responses.hits == hits, "the answer after the commit was built anew"


async def test_another_orgs_commit_keeps_an_orgs_answer(a: Instance, b: Instance) -> None:
    await a.container.connectors.update_configuration("acme", "admin", "confluence", CONFLUENCE)
    await b.active("acme")
    await a.container.connectors.update_configuration("globex", "admin", "confluence", CONFLUENCE)
    hits = b.responses.hits
    assert await b.active("acme") == []
    assert b.responses.hits == hits + 1, "globex's commit did not change what acme reads"


async def test_with_a_read_cache_a_toggle_elsewhere_is_seen_at_once(data_dir: Path) -> None:
    """Each instance has a read cache of its own (``cache = "memory"``): the answers must not be
    rebuilt from it, since nothing invalidates it when another instance commits (and, in one
    process, it is invalidated only after the commit, when the change stamp already moved)."""
    with_cache = {"CM_CACHE": "memory"}
    async for a in instance(data_dir, with_cache):
        async for b in instance(data_dir, with_cache):
            assert a.container.read_cache is not None and b.container.read_cache is not None
            await a.container.connectors.update_configuration("acme", "admin", "confluence", CONFLUENCE)
            await a.container.connectors.set_enabled("acme", "admin", "confluence", True)
            for _ in range(2):
                assert await b.active("acme") == ["confluence"]
                assert (await b.config("acme", "confluence"))["isEnabled"] is True

            r = await a.client.post(
                "/api/v1/connectors/toggle/confluence", json={"enabled": False}, headers=a.headers("acme")
            )
            assert r.status_code == 200, r.text

            assert await b.active("acme") == []
            assert (await b.config("acme", "confluence"))["isEnabled"] is False
