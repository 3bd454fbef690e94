"""What a new user meets in the first hour (issue 12): errors that say what to do, the list with
and without its trailing slash, events with a cursor, credentials for every auth type."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.api.conftest import CONFLUENCE_API_TOKEN, Api

P = "/api/v1/connectors"


async def enabled_confluence(api: Api) -> None:
    r = await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
    assert r.status_code == 200, r.text
    r = await api.client.post(f"{P}/toggle/confluence", json={"enabled": True}, headers=api.admin)
    assert r.status_code == 200, r.text


# -- which token: the 401 says ------------------------------------------------------------------


async def test_a_user_token_on_an_internal_route_is_told_to_use_a_scoped_token(api: Api) -> None:
    r = await api.client.get(f"{P}/internal/events", headers=api.admin)
    assert r.status_code == 401
    assert "scoped service token" in r.json()["error"]["message"]
    assert "connector-manager token --scoped" in r.json()["error"]["message"]
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="connector-manager", error="invalid_token"'


@pytest.mark.parametrize("path", [f"{P}/", f"{P}/active", f"{P}/config/confluence"])
async def test_a_scoped_token_on_a_user_route_is_told_to_use_a_user_token(api: Api, path: str) -> None:
    r = await api.client.get(path, headers=api.scoped)
    assert r.status_code == 401
    assert "needs a user token" in r.json()["error"]["message"]
    assert "WWW-Authenticate" in r.headers


async def test_a_token_signed_with_neither_secret_is_just_invalid(api: Api) -> None:
    forged = api.auth("eyJhbGciOiJIUzI1NiJ9.eyJzY29wZXMiOlsiZmV0Y2g6Y29uZmlnIl0sImV4cCI6OTk5OTk5OTk5OX0.c2lnbmF0dXJl")
    r = await api.client.get(f"{P}/internal/events", headers=forged)
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "invalid token"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", f"{P}/"), ("PUT", f"{P}/config/confluence"), ("GET", f"{P}/internal/events"), ("GET", f"{P}/active")],
)
async def test_every_401_carries_a_bearer_challenge(api: Api, method: str, path: str) -> None:
    r = await api.client.request(method, path)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="connector-manager"'
    expired = api.auth(api.user_token(admin=True, ttl=-60))
    r = await api.client.request(method, path, headers=expired)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="connector-manager", error="invalid_token"')


# -- the list, with and without its slash -------------------------------------------------------


async def test_the_list_is_served_without_the_trailing_slash_too(api: Api) -> None:
    without = await api.client.get(P, headers=api.admin)
    assert without.status_code == 200, without.text
    with_slash = await api.client.get(f"{P}/", headers=api.admin)
    assert [c["key"] for c in without.json()] == [c["key"] for c in with_slash.json()]
    assert "confluence" in [c["key"] for c in without.json()]


# -- bodies: a number out of range, a partial PUT ----------------------------------------------


async def test_a_number_out_of_range_is_named_with_its_field(api: Api) -> None:
    r = await api.client.put(
        f"{P}/config/confluence",
        content=b'{"baseUrl": "https://acme.atlassian.net", "sync": {"batchSize": 1e400}}',
        headers={**api.admin, "content-type": "application/json"},
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["metadata"]["errors"][0]["path"] == "sync.batchSize"
    assert "out of range" in error["message"]
    assert "Unicode" not in error["message"]


async def test_a_put_without_auth_on_an_enabled_api_token_connector_names_its_own_fields(api: Api) -> None:
    await enabled_confluence(api)
    r = await api.client.put(
        f"{P}/config/confluence", json={"baseUrl": "https://other.atlassian.net"}, headers=api.admin
    )
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["metadata"]["missing"] == ["auth.email"]  # the token is stored: it may be left out
    assert "clientId" not in error["message"] and "clientSecret" not in error["message"]
    assert "auth.email" in error["message"] and "disable" in error["message"]
    # the same PUT with the email is accepted, the stored API token kept
    body = {"baseUrl": "https://other.atlassian.net", "auth": {"email": "ops@acme.example"}}
    r = await api.client.put(f"{P}/config/confluence", json=body, headers=api.admin)
    assert r.status_code == 200, r.text
    got = (await api.client.get(f"{P}/config/confluence", headers=api.admin)).json()
    assert got["authType"] == "API_TOKEN" and got["config"]["auth"]["hasApiToken"] is True


# -- revoke of nothing --------------------------------------------------------------------------


async def test_revoking_a_connector_without_tokens_is_404_no_tokens(api: Api) -> None:
    for name in ("googleWorkspace", "onedrive"):
        r = await api.client.post(f"{P}/{name}/oauth/revoke", headers=api.admin)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "NO_TOKENS"
        assert "no tokens to revoke" in r.json()["error"]["message"]


# -- events with a cursor -----------------------------------------------------------------------


async def test_events_page_with_after_in_commit_order(api: Api) -> None:
    await enabled_confluence(api)
    for enabled in (False, True, False):
        r = await api.client.post(f"{P}/toggle/confluence", json={"enabled": enabled}, headers=api.admin)
        assert r.status_code == 200
    newest = (await api.client.get(f"{P}/internal/events", headers=api.scoped)).json()
    ids = [e["eventId"] for e in newest["events"]]
    assert len(ids) >= 5 and newest["next"] == ids[-1]
    seen, cursor = [ids[0]], ids[0]
    while True:
        page = await api.client.get(f"{P}/internal/events", params={"after": cursor, "limit": "2"}, headers=api.scoped)
        assert page.status_code == 200, page.text
        body: dict[str, Any] = page.json()
        if not body["events"]:
            assert body["next"] == cursor  # nothing new: keep polling from the same place
            break
        seen += [e["eventId"] for e in body["events"]]
        cursor = body["next"]
    assert seen == ids
    unknown = await api.client.get(f"{P}/internal/events", params={"after": "no-such-event"}, headers=api.scoped)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "EVENT_NOT_FOUND"
    other_org = api.auth(api.scoped_token(org="org-b"))
    foreign = await api.client.get(f"{P}/internal/events", params={"after": ids[0]}, headers=other_org)
    assert foreign.status_code == 404


# -- credentials through the route the events announce -----------------------------------------


async def test_an_api_token_connector_hands_its_credentials_to_its_org_through_the_announced_route(api: Api) -> None:
    await enabled_confluence(api)
    events = (await api.client.get(f"{P}/internal/events", headers=api.scoped)).json()["events"]
    (enabled,) = [e for e in events if e["eventType"] == "appEnabled"]
    route = urlsplit(enabled["payload"]["credentialsRoute"]).path
    assert route == f"{P}/internal/credentials/confluence"

    bound = api.auth(api.scoped_token(org="org-a"))
    r = await api.client.get(route, headers=bound)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "authType": "API_TOKEN",
        "baseUrl": "https://acme.atlassian.net",
        "email": "ops@acme.example",
        "apiToken": "PLANTED-API-TOKEN",
    }
    unbound = await api.client.get(route, params={"orgId": "org-a"}, headers=api.scoped)
    assert unbound.status_code == 200 and unbound.json()["apiToken"] == "PLANTED-API-TOKEN"

    other = await api.client.get(route, params={"orgId": "org-a"}, headers=api.auth(api.scoped_token(org="org-b")))
    assert other.status_code == 403 and "PLANTED" not in other.text
    elsewhere = await api.client.get(route, headers=api.auth(api.scoped_token(org="org-b")))
    assert elsewhere.status_code in (404, 409) and "PLANTED" not in elsewhere.text
    as_user = await api.client.get(route, headers=api.admin)
    assert as_user.status_code == 401 and "PLANTED" not in as_user.text

    await api.client.post(f"{P}/toggle/confluence", json={"enabled": False}, headers=api.admin)
    disabled = await api.client.get(route, headers=bound)
    assert disabled.status_code == 409
    assert disabled.json()["error"]["code"] == "CONNECTOR_DISABLED" and "PLANTED" not in disabled.text
