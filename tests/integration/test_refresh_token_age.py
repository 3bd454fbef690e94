"""Refresh-token age warnings through the HTTP API, against the real-HTTP fake provider: the
connector list shows when a refresh token will die, and TOKEN_EXPIRING goes out once per
lineage and threshold (7 days and 1 day before)."""

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

DAY = 86400.0


@pytest.fixture(params=["memory", "sqlite"])
async def client(
    request: pytest.FixtureRequest, idp: FakeOAuthProvider, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[Client]:
    env = {"CM_MASTER_KEY": "age-tests"}
    settings = load_settings(env=env, storage=request.param, secrets="memory", data_dir=tmp_path, run_refresher=False)
    container = await build_container(settings, env=env, catalog=pointed_at(idp), clock=clock)
    app = create_app(container)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cm") as http:
        yield Client(http, container)
    await container.aclose()


async def configure_google(c: Client, idp: FakeOAuthProvider, *, testing_mode: bool) -> None:
    idp.register_client("cid-google", "s3cret")
    body = {
        "baseUrl": FRONTEND,
        "auth": {"clientId": "cid-google", "clientSecret": "s3cret", "testingMode": testing_mode},
    }
    r = await c.http.put(f"{P}/config/googleWorkspace", json=body, headers=c.admin)
    assert r.status_code == 200, r.text


async def google_in_list(c: Client) -> dict[str, Any]:
    r = await c.http.get(f"{P}/", headers=c.admin)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = next(x for x in r.json() if x["key"] == "googleWorkspace")
    return found


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def expiring_events(c: Client) -> list[dict[str, Any]]:
    return [e for e in await c.events() if e["eventType"] == "TOKEN_EXPIRING"]


async def test_the_list_shows_when_a_testing_mode_refresh_token_dies(
    client: Client, idp: FakeOAuthProvider, clock: ManualClock
) -> None:
    c = client
    untouched = await google_in_list(c)
    assert untouched["token"] is None  # nothing authorized yet
    await configure_google(c, idp, testing_mode=True)
    consented = clock.now()
    await authorize_through_provider(c, idp, "googleWorkspace")

    token = (await google_in_list(c))["token"]
    assert token["status"] == "ACTIVE"
    assert token["refreshToken"] == {
        "lineageStartedAt": iso(consented),
        "lastUsedAt": None,
        "expiresAt": iso(consented + timedelta(days=7)),
        "expiresBecause": "testingMode",
        "warning": "within7Days",
    }
    async with c.container.ctx.uow() as uow:
        stored = await uow.tokens.get_for_connector("acme", "googleWorkspace")
    assert stored is not None and stored.tokens.refresh_token
    listed = (await c.http.get(f"{P}/", headers=c.admin)).text
    assert stored.tokens.access_token not in listed and stored.tokens.refresh_token not in listed

    # a refresh rotates the token: the lineage goes on, its testing-mode deadline does not move
    clock.advance(2 * DAY)
    r = await c.http.post(
        f"{P}/internal/refreshIndividualConnectorToken", json={"connector": "googleWorkspace"}, headers=c.scoped
    )
    assert r.status_code == 200, r.text
    refreshed = (await google_in_list(c))["token"]["refreshToken"]
    assert refreshed["lineageStartedAt"] == iso(consented)
    assert refreshed["lastUsedAt"] == iso(consented + timedelta(days=2))
    assert refreshed["expiresAt"] == iso(consented + timedelta(days=7))

    clock.advance(4.5 * DAY)
    assert (await google_in_list(c))["token"]["refreshToken"]["warning"] == "within1Day"

    # the app left testing mode: only Google's six months of inactivity remain
    await configure_google(c, idp, testing_mode=False)
    published = (await google_in_list(c))["token"]["refreshToken"]
    assert published["expiresAt"] == iso(consented + timedelta(days=2 + 180))
    assert (published["expiresBecause"], published["warning"]) == ("inactivity", None)


async def test_token_expiring_goes_out_once_per_lineage_and_threshold(
    client: Client, idp: FakeOAuthProvider, clock: ManualClock
) -> None:
    c = client
    refresher = c.container.refresher
    await configure_google(c, idp, testing_mode=True)
    consented = clock.now()
    await authorize_through_provider(c, idp, "googleWorkspace")

    await refresher.run_once()  # 7 days left: the 7-day threshold is reached at consent
    (first,) = await expiring_events(c)
    assert first["warnBeforeSeconds"] == 7 * 86400
    assert first["refreshTokenExpiresAt"] == int((consented + timedelta(days=7)).timestamp() * 1000)
    assert first["expiresBecause"] == "testingMode"
    assert first["serviceType"] == "GOOGLE_DRIVE" and first["orgId"] == "acme"

    for _ in range(3):  # later passes, hours apart, refreshing the token: nothing new
        clock.advance(DAY)
        await refresher.run_once()
    assert len(await expiring_events(c)) == 1

    clock.advance(3 * DAY + 60)  # 6 days and a minute after consent: the 1-day threshold
    await refresher.run_once()
    await refresher.run_once()
    assert [e["warnBeforeSeconds"] for e in await expiring_events(c)] == [7 * 86400, 86400]

    clock.advance(2 * DAY)  # past the deadline: every threshold was announced
    await refresher.run_once()
    assert len(await expiring_events(c)) == 2

    # a new authorization begins a new lineage, which warns again
    await authorize_through_provider(c, idp, "googleWorkspace")
    await refresher.run_once()
    assert [e["warnBeforeSeconds"] for e in await expiring_events(c)] == [7 * 86400, 86400, 7 * 86400]
