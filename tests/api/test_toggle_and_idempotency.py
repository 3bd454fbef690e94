"""Retrying a state-changing request is safe: toggle takes an explicit target state, and an
``Idempotency-Key`` replays the first answer instead of acting twice (issue 8, Redis down)."""

from __future__ import annotations

import pytest

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
