"""Retrying a state-changing request is safe: toggle takes an explicit target state, and an
``Idempotency-Key`` replays the first answer instead of acting twice (issue 8, Redis down)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from adapters.system import ManualClock
from entrypoints.bootstrap import build_container
from entrypoints.http.app import create_app
from entrypoints.settings import load_settings
from tests.api.conftest import CONFLUENCE_API_TOKEN, Api

P = "/api/v1/connectors"


async def _toggles(api: Api) -> list[str]:
    r = await api.client.get(f"{P}/internal/events", headers=api.scoped)
    return [e["eventType"] for e in r.json()["events"] if e["eventType"] in ("appEnabled", "appDisabled")]


async def test_toggle_with_an_explicit_state_sets_it_however_often_it_is_sent(api: Api) -> None:
    await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
    for _ in range(3):
        r = await api.client.post(f"{P}/toggle/confluence", json={"enabled": True}, headers=api.admin)
        assert r.status_code == 200 and r.json()["connector"]["isEnabled"] is True, r.text
        assert r.json()["message"] == "Confluence enabled"
    for _ in range(2):
        r = await api.client.post(f"{P}/toggle/confluence", json={"enabled": False}, headers=api.admin)
        assert r.status_code == 200 and r.json()["connector"]["isEnabled"] is False
    assert await _toggles(api) == ["appEnabled", "appDisabled"]  # no-ops emit nothing


async def test_toggle_without_a_body_still_flips(api: Api) -> None:
    await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
    r = await api.client.post(f"{P}/toggle/confluence", headers=api.admin)
    assert r.json()["connector"]["isEnabled"] is True
    r = await api.client.post(f"{P}/toggle/confluence", json={}, headers=api.admin)
    assert r.json()["connector"]["isEnabled"] is False


@pytest.mark.parametrize("body", [{"enabled": "yes"}, {"enabled": None}, {"state": True}])
async def test_toggle_refuses_a_state_that_is_not_a_boolean(api: Api, body: dict[str, object]) -> None:
    await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
    r = await api.client.post(f"{P}/toggle/confluence", json=body, headers=api.admin)
    assert r.status_code == 400
    assert r.json()["error"]["metadata"]["errors"][0]["path"] in {"enabled", "state"}
    assert await _toggles(api) == []


def _key(api: Api, key: str, **more: str) -> dict[str, str]:
    return {**api.admin, "Idempotency-Key": key, **more}


async def _enabled(api: Api, name: str = "confluence") -> bool:
    r = await api.client.get(f"{P}/config/{name}", headers=api.admin)
    return bool(r.json()["isEnabled"])


async def test_a_retried_toggle_with_the_same_key_acts_once(api: Api) -> None:
    await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
    first = await api.client.post(f"{P}/toggle/confluence", headers=_key(api, "retry-1"))
    assert first.status_code == 200 and first.json()["connector"]["isEnabled"] is True
    assert "idempotent-replayed" not in first.headers
    again = await api.client.post(f"{P}/toggle/confluence", headers=_key(api, "retry-1"))
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert await _enabled(api) is True
    assert await _toggles(api) == ["appEnabled"]
    # a new key is a new request
    r = await api.client.post(f"{P}/toggle/confluence", headers=_key(api, "retry-2"))
    assert r.json()["connector"]["isEnabled"] is False


async def test_a_write_saved_but_answered_503_is_not_repeated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis down: the commit landed, the cache could not be invalidated, the answer was a 503.
    The client retries with its key: the toggle must not flip back."""
    from connector_core.errors import Unavailable

    async with own_api(tmp_path, cache="memory") as api:
        await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
        cache = api.container.read_cache
        assert cache is not None

        async def cache_down(org_id: str) -> None:
            raise Unavailable("Redis is unreachable")

        monkeypatch.setattr(cache, "invalidate_org", cache_down)
        first = await api.client.post(f"{P}/toggle/confluence", headers=_key(api, "saved-503"))
        again = await api.client.post(f"{P}/toggle/confluence", headers=_key(api, "saved-503"))
        assert again.headers.get("idempotent-replayed") == "true", again.text
        assert (again.status_code, again.content) == (first.status_code, first.content)
        monkeypatch.undo()
        assert await _enabled(api) is True
        assert await _toggles(api) == ["appEnabled"]


async def test_the_same_key_for_another_request_is_422(api: Api) -> None:
    await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
    r = await api.client.post(f"{P}/toggle/confluence", json={"enabled": True}, headers=_key(api, "k-1"))
    assert r.status_code == 200
    for method, path, body in (
        ("POST", "toggle/confluence", {"enabled": False}),  # another body
        ("POST", "toggle/jira", {"enabled": True}),  # another path
        ("POST", "filters/confluence", {"filterOptions": {}}),
    ):
        r = await api.client.request(method, f"{P}/{path}", json=body, headers=_key(api, "k-1"))
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert r.json()["error"]["metadata"]["errors"][0]["path"] == "Idempotency-Key"
    assert await _enabled(api) is True


async def test_keys_are_per_org(api: Api) -> None:
    await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
    r = await api.client.post(f"{P}/toggle/confluence", json={"enabled": True}, headers=_key(api, "shared"))
    assert r.status_code == 200
    other = {**api.auth(api.user_token(org="org-b", user="bob", admin=True)), "Idempotency-Key": "shared"}
    r = await api.client.post(f"{P}/filters/jira", json={"filterOptions": {}}, headers=other)
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers


async def test_a_refused_request_is_not_kept(api: Api) -> None:
    r = await api.client.post(f"{P}/toggle/confluence", headers=_key(api, "early"))
    assert r.status_code == 409  # not configured yet: nothing changed
    await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
    r = await api.client.post(f"{P}/toggle/confluence", headers=_key(api, "early"))
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    assert r.json()["connector"]["isEnabled"] is True


async def test_a_key_still_running_is_409(api: Api) -> None:
    now = api.container.ctx.clock.now()
    await api.container.storage.idempotency.claim(
        "org-a", "busy", fingerprint="x", claim_id="other-request", now=now, until=now + timedelta(seconds=60)
    )
    r = await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=_key(api, "busy"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "IDEMPOTENCY_KEY_IN_USE"
    assert (await api.client.get(f"{P}/config/confluence", headers=api.admin)).json()["version"] == 0


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\there", "ünïcode"])
async def test_a_malformed_key_is_400(api: Api, key: str) -> None:
    headers = [(k, v) for k, v in api.admin.items()] + [("Idempotency-Key", key)]
    r = await api.client.post(
        f"{P}/filters/jira", json={"filterOptions": {}}, headers=[(k.encode(), v.encode()) for k, v in headers]
    )
    assert r.status_code == 400
    assert r.json()["error"]["metadata"]["errors"][0]["path"] == "Idempotency-Key"


async def test_an_answer_is_kept_for_a_day(tmp_path: Path) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with own_api(tmp_path, clock=clock) as api:
        await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
        assert (await api.client.post(f"{P}/toggle/confluence", headers=_key(api, "day"))).status_code == 200
        clock.advance(23 * 3600)
        r = await api.client.post(f"{P}/toggle/confluence", headers=_key(api, "day"))
        assert r.headers.get("idempotent-replayed") == "true"
        clock.advance(3601)
        r = await api.client.post(f"{P}/toggle/confluence", headers=_key(api, "day"))
        assert "idempotent-replayed" not in r.headers and r.json()["connector"]["isEnabled"] is False


@contextlib.asynccontextmanager
async def own_api(tmp_path: Path, *, clock: ManualClock | None = None, cache: str = "none") -> AsyncIterator[Api]:
    settings = load_settings(env={}, storage="memory", secrets="memory", cache=cache, data_dir=tmp_path)
    container = await build_container(settings, env={}, clock=clock)
    transport = httpx.ASGITransport(app=create_app(container), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield Api(client, container)
    await container.aclose()
