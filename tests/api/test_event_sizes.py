"""What goes into an event stays well inside what a broker takes (1 MB): configuration sections
and filter selections are bounded at the API (413 naming the field), and ``connectorConfigured``
names changed fields, never values, and only so many (issue 8: one oversized event blocked
every org's events)."""

from __future__ import annotations

import json
from typing import Any

from tests.api.conftest import Api

P = "/api/v1/connectors"
BASE = "https://acme.atlassian.net"


async def events(api: Api) -> list[dict[str, Any]]:
    r = await api.client.get(f"{P}/internal/events", params={"limit": "1000"}, headers=api.scoped)
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


async def test_a_configuration_section_over_64_kib_is_a_413_naming_it(api: Api) -> None:
    big = {f"key{i:05d}": "v" * 60 for i in range(1200)}  # ~90 KiB, well under the 1 MiB body limit
    r = await api.client.put(f"{P}/config/jira", json={"baseUrl": BASE, "filters": big}, headers=api.admin)
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert error["metadata"]["errors"] == [{"path": "filters", "message": "is larger than 64 KiB as JSON"}]
    assert (await api.client.get(f"{P}/config/jira", headers=api.admin)).json()["version"] == 0
    assert await events(api) == []


async def test_a_filter_selection_over_64_kib_is_a_413_naming_it(api: Api) -> None:
    body = {"filterOptions": {"projects": [f"PROJECT-{i:04d}-" + "x" * 100 for i in range(1000)]}}
    r = await api.client.post(f"{P}/filters/jira", json=body, headers=api.admin)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["metadata"]["errors"][0]["path"] == "filterOptions"
    assert (await api.client.get(f"{P}/filters/jira", headers=api.admin)).json()["filterOptions"] == {}


async def test_configured_names_many_changed_fields_by_their_section(api: Api) -> None:
    many: dict[str, Any] = {f"k{i:04d}": 1 for i in range(3000)}  # under 64 KiB, but 3000 names
    body: dict[str, Any] = {"baseUrl": BASE, "filters": many}
    r = await api.client.put(f"{P}/config/jira", json=body, headers=api.admin)
    assert r.status_code == 200, r.text
    configured = [e for e in await events(api) if e["eventType"] == "connectorConfigured"]
    assert len(configured) == 1
    changed = configured[0]["payload"]["changedFields"]
    assert changed == ["baseUrl", "filters"]
    assert len(json.dumps(configured[0])) < 2000
    # a few changes are still named one by one; an endless name by its section
    body["filters"] = {**many, "k0001": 2, "n" * 5000: True}
    r = await api.client.put(f"{P}/config/jira", json=body, headers=api.admin)
    assert r.status_code == 200, r.text
    configured = [e for e in await events(api) if e["eventType"] == "connectorConfigured"]
    assert configured[-1]["payload"]["changedFields"] == ["filters", "filters.k0001"]
