"""The HTTP API through ASGI, on in-memory adapters (``api``) or on each storage backend (``stored_api``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from attrs import define

from entrypoints.bootstrap import Container, build_container
from entrypoints.http.app import create_app
from entrypoints.http.auth import issue_scoped_token, issue_user_token
from entrypoints.settings import load_settings


@define
class Api:
    client: httpx.AsyncClient
    container: Container

    def user_token(
        self,
        org: str = "org-a",
        user: str = "user-1",
        *,
        admin: bool = False,
        email: str = "user1@example.com",
        ttl: int = 600,
    ) -> str:
        return issue_user_token(
            self.container.service_secrets.jwt_secret,
            user_id=user,
            org_id=org,
            email=email,
            admin=admin,
            ttl=ttl,
            now=int(time.time()),
        )

    def scoped_token(self, scopes: list[str] | None = None, org: str | None = None) -> str:
        return issue_scoped_token(
            self.container.service_secrets.scoped_jwt_secret,
            scopes=scopes or ["fetch:config"],
            ttl=600,
            now=int(time.time()),
            org_id=org,
        )

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.auth(self.user_token(admin=True))

    @property
    def user(self) -> dict[str, str]:
        return self.auth(self.user_token())

    @property
    def scoped(self) -> dict[str, str]:
        return self.auth(self.scoped_token())


@pytest.fixture(params=["no-cache", "read-cache"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    cache = "memory" if request.param == "read-cache" else "none"
    settings = load_settings(env={}, storage="memory", secrets="memory", cache=cache, data_dir=tmp_path)
    container = await build_container(settings, env={})
    app = create_app(container)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Api(client, container)
    await container.aclose()


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.memory, id="memory"),
        pytest.param("sqlite", marks=pytest.mark.sqlite, id="sqlite"),
        pytest.param("mongo", marks=pytest.mark.mongo, id="mongo"),
    ]
)
async def stored_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """The API over each storage backend (for behaviour that depends on how one stores things):
    secrets in SQLite beside a real store, in memory beside the memory store; a fresh database
    per test."""
    storage: str = request.param
    extra: dict[str, Any] = {}
    if storage == "mongo":
        extra = {"mongo_url": request.getfixturevalue("mongo_url"), "mongo_database": f"api_{uuid.uuid4().hex}"}
    secrets = "memory" if storage == "memory" else "sqlite"
    settings = load_settings(env={}, storage=storage, secrets=secrets, data_dir=tmp_path, **extra)
    container = await build_container(settings, env={})
    transport = httpx.ASGITransport(app=create_app(container), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(client, container)
    finally:
        await container.aclose()


CONFLUENCE_API_TOKEN = {
    "baseUrl": "https://acme.atlassian.net",
    "auth": {"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": "PLANTED-API-TOKEN"},
}
