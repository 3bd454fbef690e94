"""Writes that change only a token record, seen through the HTTP API with the read cache on,
against the real-HTTP fake provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.system import ManualClock
from entrypoints.bootstrap import build_container
from entrypoints.http.app import create_app
from entrypoints.settings import load_settings
from tests.fakes.oauth_provider import FakeOAuthProvider
from tests.integration.test_oauth_http_flows import FRONTEND, Client, P, authorize_through_provider, pointed_at


@pytest.fixture(params=["memory", "sqlite"])
async def client(
    request: pytest.FixtureRequest, idp: FakeOAuthProvider, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[Client]:
    env = {"CM_MASTER_KEY": "token-writes-tests"}
    settings = load_settings(
        env=env, storage=request.param, secrets="memory", cache="memory", data_dir=tmp_path, run_refresher=False
    )
    container = await build_container(settings, env=env, catalog=pointed_at(idp), clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(container)), base_url="http://cm") as h:
        yield Client(h, container)
    await container.aclose()


async def configure_google(c: Client, idp: FakeOAuthProvider, client_id: str) -> None:
    idp.register_client(client_id, f"secret-of-{client_id}")
    body = {"baseUrl": FRONTEND, "auth": {"clientId": client_id, "clientSecret": f"secret-of-{client_id}"}}
    r = await c.http.put(f"{P}/config/googleWorkspace", json=body, headers=c.admin)
    assert r.status_code == 200, r.text


async def google_token_in_list(c: Client) -> dict[str, Any]:
    r = await c.http.get(f"{P}/", headers=c.admin)
    assert r.status_code == 200, r.text
    token: dict[str, Any] = next(x for x in r.json() if x["key"] == "googleWorkspace")["token"]
    return token


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_the_list_shows_a_refresh_at_once_with_the_read_cache_on(
    client: Client, idp: FakeOAuthProvider, clock: ManualClock
) -> None:
    """A refresh saves only the token record; the connector list (cached per org) shows the new
    token times right after it, not after the cache's TTL."""
    c = client
    await configure_google(c, idp, "client-1")
    await authorize_through_provider(c, idp, "googleWorkspace")
    granted = clock.now()
    before = await google_token_in_list(c)  # now cached
    assert before["lastRefreshedAt"] == iso(granted)
    assert (await google_token_in_list(c)) == before

    clock.advance(600)
    r = await c.http.post(f"{P}/internal/refreshIndividualConnectorToken", json={}, headers=c.scoped)
    assert r.status_code == 200, r.text
    after = await google_token_in_list(c)
    assert after["lastRefreshedAt"] == iso(granted + timedelta(seconds=600))
    assert after["accessTokenExpiresAt"] != before["accessTokenExpiresAt"]
