"""Full OAuth flows for every catalog provider, through the HTTP API, against a real-HTTP
fake provider: configure → authorize → provider → callback → credentials → refresh → revoke."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from attrs import evolve

from connector_core.catalog import Catalog, CatalogEntry, load_default_catalog
from entrypoints.bootstrap import Container, build_container
from entrypoints.http.app import create_app
from entrypoints.http.auth import issue_scoped_token, issue_user_token
from entrypoints.settings import load_settings
from tests.fakes.oauth_provider import FakeOAuthProvider

P = "/api/v1/connectors"
FRONTEND = "http://localhost:3000"
EXTRA_AUTH: dict[str, dict[str, str]] = {
    "onedrive": {"tenantId": "contoso"},
    "sharepointOnline": {"tenantId": "contoso", "sharepointDomain": "contoso.sharepoint.com"},
}


def pointed_at(idp: FakeOAuthProvider) -> Catalog:
    """The built-in catalog with every provider's endpoints on the fake (params kept)."""
    entries: list[CatalogEntry] = []
    for entry in load_default_catalog():
        assert entry.oauth is not None
        oauth = evolve(
            entry.oauth,
            authorize_url=idp.authorize_url,
            token_url=idp.token_url,
            revocation_url=idp.revocation_url,
            jwks_uri=idp.jwks_uri,
            issuer=idp.issuer,
            url_params=(),
        )
        entries.append(evolve(entry, oauth=oauth))
    return Catalog(entries)


class Client:
    def __init__(self, http: httpx.AsyncClient, container: Container) -> None:
        self.http, self.container = http, container
        now = int(time.time())
        secrets = container.service_secrets
        self.admin = {
            "Authorization": "Bearer "
            + issue_user_token(
                secrets.jwt_secret,
                user_id="alice",
                org_id="acme",
                email="fake.user@example.test",
                admin=True,
                ttl=600,
                now=now,
            )
        }
        self.scoped = {
            "Authorization": "Bearer "
            + issue_scoped_token(secrets.scoped_jwt_secret, scopes=["fetch:config"], ttl=600, now=now, org_id="acme")
        }

    async def events(self) -> list[dict[str, Any]]:
        r = await self.http.get(f"{P}/internal/events", params={"limit": "1000"}, headers=self.scoped)
        return list(r.json()["events"])


@pytest.fixture
async def client(idp: FakeOAuthProvider, tmp_path: Path) -> AsyncIterator[Client]:
    env = {"CM_MASTER_KEY": "oauth-flow-tests"}
    settings = load_settings(env=env, storage="sqlite", data_dir=tmp_path, run_refresher=False)
    container = await build_container(settings, env=env, catalog=pointed_at(idp))
    app = create_app(container)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cm") as http:
        yield Client(http, container)
    await container.aclose()


async def configure(c: Client, idp: FakeOAuthProvider, key: str, client_id: str) -> None:
    """Register a client at the provider and store it as the connector's OAuth client."""
    idp.register_client(client_id, "s3cret")
    body = {"baseUrl": FRONTEND, "auth": {"clientId": client_id, "clientSecret": "s3cret"}}
    r = await c.http.put(f"{P}/config/{key}", json=body, headers=c.admin)
    assert r.status_code == 200, r.text


async def authorize_through_provider(c: Client, idp: FakeOAuthProvider, key: str) -> dict[str, list[str]]:
    r = await c.http.get(f"{P}/{key}/oauth/authorize", params={"baseUrl": FRONTEND}, headers=c.admin)
    assert r.status_code == 200, r.text
    url = r.json()["authorizationUrl"]
    assert url.startswith(idp.authorize_url)
    params = parse_qs(urlsplit(url).query)
    async with httpx.AsyncClient() as browser:  # the person's browser at the provider
        consent = await browser.get(url, follow_redirects=False)
    assert consent.status_code in (302, 303, 307), consent.text
    back = urlsplit(consent.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == f"{FRONTEND}/connectors/oauth/callback/{key}"
    query = parse_qs(back.query)
    r = await c.http.get(
        f"{P}/{key}/oauth/callback",
        params={"code": query["code"][0], "state": query["state"][0], "baseUrl": FRONTEND},
        headers=c.admin,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["authenticated"] is True
    assert body["redirectUrl"] == f"{FRONTEND}/connectors/{key}"
    return params


@pytest.mark.parametrize("key", ["googleWorkspace", "onedrive", "sharepointOnline", "confluence", "jira", "slack"])
async def test_full_flow(client: Client, idp: FakeOAuthProvider, key: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = client
    client_id = f"cid-{key}"
    idp.register_client(client_id, "PLANTED-CLIENT-SECRET")
    body = {
        "baseUrl": FRONTEND,
        "auth": {"clientId": client_id, "clientSecret": "PLANTED-CLIENT-SECRET", **EXTRA_AUTH.get(key, {})},
    }
    r = await c.http.put(f"{P}/config/{key}", json=body, headers=c.admin)
    assert r.status_code == 200, r.text
    assert r.json()["connector"]["authStatus"]["state"] == "NOT_AUTHENTICATED"

    params = await authorize_through_provider(c, idp, key)
    entry = c.container.catalog.get(key)
    assert entry.oauth is not None
    for name, value in entry.oauth.extra_authorize_params.items():
        assert params[name] == [value]
    if key == "googleWorkspace":
        assert params["access_type"] == ["offline"] and params["prompt"] == ["consent"]
    if key in ("confluence", "jira"):
        assert params["audience"] == ["api.atlassian.com"] and params["prompt"] == ["consent"]
    if key in ("onedrive", "sharepointOnline"):
        assert "offline_access" in params["scope"][0].split()
    assert ("code_challenge" in params) is entry.oauth.pkce
    if entry.oauth.pkce:
        assert params["code_challenge_method"] == ["S256"]
    assert len(params["state"][0]) >= 22  # ≥ 128 bits, URL-safe

    active = (await c.http.get(f"{P}/active", headers=c.admin)).json()
    mine = next(x for x in active if x["key"] == key)
    assert mine["authStatus"]["state"] == "AUTHENTICATED"
    assert mine["enabledApps"] == list(entry.apps)

    events = await c.events()
    created = [e for e in events if e["eventType"] == "TOKEN_CREATED"]
    enabled = [e for e in events if e["eventType"] == "appEnabled"]
    assert len(created) == 1 and created[0]["serviceType"] == entry.token_service_type
    assert enabled[-1]["payload"]["syncAction"] == "immediate"
    assert enabled[-1]["payload"]["apps"] == list(entry.apps)

    # a service asks for a fresh access token; it is real at the provider
    r = await c.http.get(f"{P}/internal/credentials/{key}", headers=c.scoped)
    assert r.status_code == 200, r.text
    token = r.json()["accessToken"]
    assert idp.is_access_token_valid(token)

    before = idp.stats()["refresh_grants"]
    r = await c.http.post(f"{P}/internal/refreshIndividualConnectorToken", json={"connector": key}, headers=c.scoped)
    assert r.status_code == 200, r.text
    assert idp.stats()["refresh_grants"] == before + 1
    new = (await c.http.get(f"{P}/internal/credentials/{key}", headers=c.scoped)).json()["accessToken"]
    assert new != token and idp.is_access_token_valid(new)
    assert [e["eventType"] for e in await c.events()].count("TOKEN_REFRESHED") == 1

    revocations = idp.stats()["revocations"]
    r = await c.http.post(f"{P}/{key}/oauth/revoke", headers=c.admin)
    assert r.status_code == 200, r.text
    assert r.json()["connector"]["isEnabled"] is False
    assert r.json()["connector"]["authStatus"]["state"] == "NOT_AUTHENTICATED"
    assert idp.stats()["revocations"] > revocations
    assert not idp.is_access_token_valid(new)
    tail = [e["eventType"] for e in await c.events()]
    assert "TOKEN_REVOKED" in tail and tail[-1] in ("appDisabled", "TOKEN_REVOKED")
    r = await c.http.get(f"{P}/internal/credentials/{key}", headers=c.scoped)
    assert r.status_code == 404

    assert "PLANTED-CLIENT-SECRET" not in caplog.text
    assert token not in caplog.text and new not in caplog.text
    for e in await c.events():
        assert token not in str(e) and new not in str(e)


async def test_replayed_state_is_refused_and_changes_nothing(client: Client, idp: FakeOAuthProvider) -> None:
    c = client
    await configure(c, idp, "jira", "cid-replay")
    r = await c.http.get(f"{P}/jira/oauth/authorize", params={"baseUrl": FRONTEND}, headers=c.admin)
    async with httpx.AsyncClient() as browser:
        consent = await browser.get(r.json()["authorizationUrl"], follow_redirects=False)
    q = parse_qs(urlsplit(consent.headers["location"]).query)
    args = {"code": q["code"][0], "state": q["state"][0], "baseUrl": FRONTEND}
    first = await c.http.get(f"{P}/jira/oauth/callback", params=args, headers=c.admin)
    assert first.status_code == 200
    n_events = len(await c.events())
    again = await c.http.get(f"{P}/jira/oauth/callback", params=args, headers=c.admin)
    assert again.status_code == 400 and again.json()["error"]["code"] == "INVALID_STATE"
    assert len(await c.events()) == n_events


async def test_state_of_another_org_is_refused(client: Client, idp: FakeOAuthProvider) -> None:
    c = client
    await configure(c, idp, "jira", "cid-org")
    r = await c.http.get(f"{P}/jira/oauth/authorize", params={"baseUrl": FRONTEND}, headers=c.admin)
    async with httpx.AsyncClient() as browser:
        consent = await browser.get(r.json()["authorizationUrl"], follow_redirects=False)
    q = parse_qs(urlsplit(consent.headers["location"]).query)
    other = {
        "Authorization": "Bearer "
        + issue_user_token(
            c.container.service_secrets.jwt_secret,
            user_id="mallory",
            org_id="evil",
            email="m@evil.example",
            admin=True,
            ttl=600,
            now=int(time.time()),
        )
    }
    r = await c.http.get(
        f"{P}/jira/oauth/callback",
        params={"code": q["code"][0], "state": q["state"][0], "baseUrl": FRONTEND},
        headers=other,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_STATE"
    mine = await c.http.get(f"{P}/config/jira", headers=c.admin)
    assert mine.json()["authStatus"] == "NOT_AUTHENTICATED"
    theirs = await c.http.get(f"{P}/config/jira", headers=other)
    assert theirs.json()["version"] == 0


async def test_provider_error_marks_the_connector_with_the_reason(client: Client, idp: FakeOAuthProvider) -> None:
    c = client
    await configure(c, idp, "jira", "cid-deny")
    r = await c.http.get(f"{P}/jira/oauth/authorize", params={"baseUrl": FRONTEND}, headers=c.admin)
    state = parse_qs(urlsplit(r.json()["authorizationUrl"]).query)["state"][0]
    r = await c.http.get(
        f"{P}/jira/oauth/callback",
        params={"error": "access_denied", "state": state, "baseUrl": FRONTEND},
        headers=c.admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["authenticated"] is False and "access_denied" in (r.json()["reason"] or "")
    cfg = (await c.http.get(f"{P}/config/jira", headers=c.admin)).json()
    assert cfg["authStatus"] == "NOT_AUTHENTICATED"


async def test_open_redirect_is_refused(client: Client, idp: FakeOAuthProvider) -> None:
    c = client
    await configure(c, idp, "jira", "cid-redir")
    for bad in ("https://evil.example", "javascript:alert(1)", "http://localhost:3000@evil.example"):
        r = await c.http.get(f"{P}/jira/oauth/authorize", params={"baseUrl": bad}, headers=c.admin)
        assert r.status_code == 400, bad
        assert r.json()["error"]["metadata"]["errors"][0]["path"] == "baseUrl"


async def test_callback_without_code_and_state(client: Client) -> None:
    r = await client.http.get(f"{P}/jira/oauth/callback", params={"baseUrl": FRONTEND}, headers=client.admin)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "Code and state are required"


async def test_get_token_from_code_legacy_route(client: Client, idp: FakeOAuthProvider) -> None:
    c = client
    await configure(c, idp, "googleWorkspace", "cid-legacy")
    redirect = f"{FRONTEND}/connectors/oauth/callback/googleWorkspace"
    drive = "https://www.googleapis.com/auth/drive.readonly"
    idp.set_user("sub-1", "fake.user@example.test")
    code = idp.issue_code("cid-legacy", redirect, ["openid", "email", drive])
    r = await c.http.post(f"{P}/getTokenFromCode", json={"tempCode": code, "baseUrl": FRONTEND}, headers=c.admin)
    assert r.status_code == 201, r.text
    assert r.json()["enabledApps"] == ["DRIVE"]  # only what was granted
    code = idp.issue_code("cid-legacy", redirect, ["openid", "email", drive])
    r = await c.http.post(f"{P}/getTokenFromCode", json={"tempCode": code, "baseUrl": FRONTEND}, headers=c.admin)
    assert r.status_code == 200, r.text
    # a consent given by another Google account is refused
    idp.set_user("sub-2", "someone.else@example.test")
    code = idp.issue_code("cid-legacy", redirect, ["openid", "email", drive])
    r = await c.http.post(f"{P}/getTokenFromCode", json={"tempCode": code, "baseUrl": FRONTEND}, headers=c.admin)
    assert r.status_code == 403
    assert r.json()["error"]["message"] == "Account email is different from the consent-giving mail."
    idp.set_user("sub-1", "fake.user@example.test")
    r = await c.http.post(f"{P}/getTokenFromCode", json={}, headers=c.admin)
    assert r.status_code == 400
    assert r.json()["error"]["metadata"]["errors"][0]["path"] == "tempCode"


async def test_a_disabled_connector_hands_out_no_tokens(client: Client, idp: FakeOAuthProvider) -> None:
    c = client
    await configure(c, idp, "jira", "cid-off")
    await authorize_through_provider(c, idp, "jira")
    assert (await c.http.get(f"{P}/internal/credentials/jira", headers=c.scoped)).status_code == 200
    r = await c.http.post(f"{P}/toggle/jira", headers=c.admin)
    assert r.json()["connector"]["isEnabled"] is False
    grants = idp.stats()["refresh_grants"]
    r = await c.http.get(f"{P}/internal/credentials/jira", headers=c.scoped)
    assert r.status_code == 409 and r.json()["error"]["code"] == "CONNECTOR_DISABLED"
    r = await c.http.post(f"{P}/internal/refreshIndividualConnectorToken", json={"connector": "jira"}, headers=c.scoped)
    assert r.status_code == 409
    # the background refresher leaves it alone too
    report = await c.container.refresher.refresh_due(batch_size=100)
    assert report.total == 0 and idp.stats()["refresh_grants"] == grants
    r = await c.http.post(f"{P}/toggle/jira", headers=c.admin)
    assert r.json()["connector"]["isEnabled"] is True
    assert (await c.http.get(f"{P}/internal/credentials/jira", headers=c.scoped)).status_code == 200


async def test_a_refused_code_is_a_400(client: Client, idp: FakeOAuthProvider) -> None:
    c = client
    await configure(c, idp, "jira", "cid-badcode")
    r = await c.http.get(f"{P}/jira/oauth/authorize", params={"baseUrl": FRONTEND}, headers=c.admin)
    state = parse_qs(urlsplit(r.json()["authorizationUrl"]).query)["state"][0]
    r = await c.http.get(
        f"{P}/jira/oauth/callback",
        params={"code": "not-a-real-code", "state": state, "baseUrl": FRONTEND},
        headers=c.admin,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "OAUTH_ERROR"
    assert (await c.http.get(f"{P}/config/jira", headers=c.admin)).json()["authStatus"] == "NOT_AUTHENTICATED"


async def test_a_refused_reconsent_that_disables_the_connector_stops_its_credentials(
    client: Client, idp: FakeOAuthProvider
) -> None:
    """The OAuth client changed (re-authorization asked), then the person refuses consent: the
    connector is disabled, and its old token must no longer be handed out."""
    c = client
    await configure(c, idp, "jira", "cid-first")
    await authorize_through_provider(c, idp, "jira")
    await configure(c, idp, "jira", "cid-second")
    assert (await c.http.get(f"{P}/config/jira", headers=c.admin)).json()["authStatus"] == "NEEDS_REAUTHENTICATION"
    assert (await c.http.get(f"{P}/internal/credentials/jira", headers=c.scoped)).status_code == 409
    r = await c.http.get(f"{P}/jira/oauth/authorize", params={"baseUrl": FRONTEND}, headers=c.admin)
    state = parse_qs(urlsplit(r.json()["authorizationUrl"]).query)["state"][0]
    params = {"error": "access_denied", "state": state, "baseUrl": FRONTEND}
    r = await c.http.get(f"{P}/jira/oauth/callback", params=params, headers=c.admin)
    assert r.status_code == 200, r.text
    assert r.json()["authenticated"] is False
    r = await c.http.get(f"{P}/internal/credentials/jira", headers=c.scoped)
    assert r.status_code == 409 and r.json()["error"]["code"] == "REAUTHORIZATION_REQUIRED"


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("change", ["clientId", "clientSecret"])
async def test_changing_the_oauth_client_retires_the_token_issued_to_the_old_one(
    client: Client, idp: FakeOAuthProvider, change: str, enabled: bool
) -> None:
    """A token belongs to the client it was issued to: once PUT /config changes the client, the
    token needs a new authorization in the same commit (TOKEN_EXPIRED announces it), and is
    neither served nor refreshed with the new client, enabled connector or not."""
    c = client
    await configure(c, idp, "jira", "cid-old")
    await authorize_through_provider(c, idp, "jira")
    if not enabled:
        assert (await c.http.post(f"{P}/toggle/jira", headers=c.admin)).json()["connector"]["isEnabled"] is False
    seen = len(await c.events())
    auth = {"clientId": "cid-new" if change == "clientId" else "cid-old", "clientSecret": "s3cret"}
    if change == "clientSecret":
        auth["clientSecret"] = "another-s3cret"
    r = await c.http.put(f"{P}/config/jira", json={"baseUrl": FRONTEND, "auth": auth}, headers=c.admin)
    assert r.status_code == 200, r.text
    assert r.json()["connector"]["authStatus"]["state"] == "NEEDS_REAUTHENTICATION"
    events = (await c.events())[seen:]
    kinds = [(e["eventType"], e.get("payload", {}).get("status")) for e in events]
    assert ("connectorAuthStatusChanged", "NEEDS_REAUTHENTICATION") in kinds
    assert [e["eventType"] for e in events].count("TOKEN_EXPIRED") == 1
    grants = idp.stats()["refresh_grants"]
    r = await c.http.get(f"{P}/internal/credentials/jira", headers=c.scoped)
    assert r.status_code == 409 and r.json()["error"]["code"] == "REAUTHORIZATION_REQUIRED"
    r = await c.http.post(f"{P}/internal/refreshIndividualConnectorToken", json={"connector": "jira"}, headers=c.scoped)
    assert r.status_code == 409 and r.json()["error"]["code"] == "REAUTHORIZATION_REQUIRED"
    report = await c.container.refresher.refresh_due(batch_size=100)
    assert report.total == 0 and idp.stats()["refresh_grants"] == grants
    # a new authorization with the new client brings it back
    idp.register_client(auth["clientId"], auth["clientSecret"])
    await authorize_through_provider(c, idp, "jira")
    assert (await c.http.get(f"{P}/internal/credentials/jira", headers=c.scoped)).status_code == 200
