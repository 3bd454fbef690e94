"""GET /internal/events on every storage backend: one org's events, exactly that org's."""

from __future__ import annotations

from tests.api.conftest import CONFLUENCE_API_TOKEN, Api

P = "/api/v1/connectors"


async def configure(api: Api, org: str) -> None:
    admin = api.auth(api.user_token(org=org, admin=True))
    r = await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=admin)
    assert r.status_code == 200, r.text
    r = await api.client.post(f"{P}/toggle/confluence", json={"enabled": True}, headers=admin)
    assert r.status_code == 200, r.text


async def test_an_org_whose_id_prefixes_another_sees_only_its_own_events(stored_api: Api) -> None:
    """``orgA`` and ``orgA:x``: the second's partition keys ("orgA:x:confluence") start with the
    first's ("orgA:"); neither org is shown the other's events, newest or after a cursor."""
    api = stored_api
    await configure(api, "orgA")
    await configure(api, "orgA:x")
    seen: dict[str, list[str]] = {}
    for org in ("orgA", "orgA:x"):
        bound = api.auth(api.scoped_token(org=org))
        r = await api.client.get(f"{P}/internal/events", headers=bound)
        assert r.status_code == 200, r.text
        events = r.json()["events"]
        assert events and {e["payload"]["orgId"] for e in events} == {org}
        seen[org] = [e["eventId"] for e in events]
        later = await api.client.get(f"{P}/internal/events", params={"after": seen[org][0]}, headers=bound)
        assert later.status_code == 200, later.text
        assert [e["eventId"] for e in later.json()["events"]] == seen[org][1:]
    # the other org's cursor is unknown to each
    foreign = await api.client.get(
        f"{P}/internal/events", params={"after": seen["orgA:x"][0]}, headers=api.auth(api.scoped_token(org="orgA"))
    )
    assert foreign.status_code == 404, foreign.text
