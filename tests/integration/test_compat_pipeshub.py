"""``compat = "pipeshub"``: routes, payloads and events exactly as the existing service's
consumers read them, through the HTTP API against the fake OAuth provider. Each behaviour is
checked against the default profile too, where our own shapes stay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from adapters.kafka import KafkaEventPublisher
from connector_core.model.events import RealTimeUpdatesChanged
from connector_core.ports.outbox import OutboxMessage
from entrypoints import compat
from entrypoints.bootstrap import Container, build_container
from entrypoints.http.app import create_app
from entrypoints.http.auth import issue_scoped_token, issue_user_token
from entrypoints.settings import load_settings
from tests.contract.backends.kafka import read_back
from tests.fakes.backend import FakeBackend
from tests.fakes.oauth_provider import FakeOAuthProvider
from tests.integration.test_oauth_http_flows import pointed_at

P = "/api/v1/connectors"
FRONTEND = "http://localhost:3000"
FRONTEND_PAGE = f"{FRONTEND}/account/individual/settings/connector/googleWorkspace"
ORG, USER, EMAIL = "65f000000000000000000001", "65f0000000000000000000aa", "fake.user@example.test"
DRIVE = "https://www.googleapis.com/auth/drive.readonly"
GMAIL = "https://www.googleapis.com/auth/gmail.readonly"


class Deployment:
    def __init__(self, http: httpx.AsyncClient, container: Container) -> None:
        self.http, self.container = http, container
        secrets = container.service_secrets
        now = int(time.time())
        token = issue_user_token(
            secrets.jwt_secret, user_id=USER, org_id=ORG, email=EMAIL, admin=True, ttl=600, now=now
        )
        self.admin = {"Authorization": f"Bearer {token}"}
        scoped = issue_scoped_token(secrets.scoped_jwt_secret, scopes=["fetch:config"], ttl=600, now=now, org_id=ORG)
        self.scoped = {"Authorization": f"Bearer {scoped}"}

    def python_service(self, user: str = USER) -> dict[str, str]:
        """A service token as the existing deployment's Python services mint it: no iat, no exp."""
        claims = {"orgId": ORG, "userId": user, "scopes": ["fetch:config"]}
        return {"Authorization": "Bearer " + jwt.encode(claims, self.container.service_secrets.scoped_jwt_secret)}

    async def events(self) -> list[dict[str, Any]]:
        """The entity and sync events, oldest first (token events have no payload)."""
        r = await self.http.get(f"{P}/internal/events", params={"limit": "1000"}, headers=self.scoped)
        assert r.status_code == 200, r.text
        return [e for e in r.json()["events"] if "payload" in e]

    async def configure_google(self, idp: FakeOAuthProvider, client_id: str, **auth: Any) -> None:
        idp.register_client(client_id, "s3cret")
        body = {"baseUrl": FRONTEND, "auth": {"clientId": client_id, "clientSecret": "s3cret", **auth}}
        r = await self.http.put(f"{P}/config/googleWorkspace", json=body, headers=self.admin)
        assert r.status_code == 200, r.text

    async def legacy_consent(self, idp: FakeOAuthProvider, client_id: str, redirect: str) -> httpx.Response:
        idp.set_user("sub-1", EMAIL)
        code = idp.issue_code(client_id, redirect, ["openid", "email", DRIVE, GMAIL])
        return await self.http.post(f"{P}/getTokenFromCode", json={"tempCode": code}, headers=self.admin)


@contextlib.asynccontextmanager
async def deployment(idp: FakeOAuthProvider, tmp_path: Path, **settings: Any) -> AsyncIterator[Deployment]:
    env = {"CM_MASTER_KEY": "compat-tests"}
    loaded = load_settings(env=env, storage="sqlite", data_dir=tmp_path, run_refresher=False, **settings)
    container = await build_container(loaded, env=env, catalog=pointed_at(idp))
    transport = httpx.ASGITransport(app=create_app(container))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://cm") as http:
            yield Deployment(http, container)
    finally:
        await container.aclose()


@pytest.fixture
async def pipeshub(idp: FakeOAuthProvider, tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployment(idp, tmp_path, compat="pipeshub", frontend_url=FRONTEND) as d:
        yield d


@pytest.fixture
async def ours(idp: FakeOAuthProvider, tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployment(idp, tmp_path, frontend_url=FRONTEND, oauth_legacy_redirect_uri=FRONTEND_PAGE) as d:
        yield d


async def test_get_token_from_code_answers_message_and_connector_and_redirects_to_the_front_end_page(
    pipeshub: Deployment, idp: FakeOAuthProvider
) -> None:
    await pipeshub.configure_google(idp, "cid-legacy")
    first = await pipeshub.legacy_consent(idp, "cid-legacy", FRONTEND_PAGE)  # no baseUrl, as the old front end
    assert first.status_code == 201, first.text
    assert first.json()["message"] == "Connector googleWorkspace created and enabled"
    assert first.json()["connector"]["key"] == "googleWorkspace"
    assert first.json()["connector"]["isEnabled"] is True
    again = await pipeshub.legacy_consent(idp, "cid-legacy", FRONTEND_PAGE)
    assert again.status_code == 200, again.text
    assert again.json()["message"] == "Connector is now enabled"

    enabled = [e for e in await pipeshub.events() if e["eventType"] == "appEnabled"]
    assert enabled[-1]["payload"]["credentialsRoute"] == "http://127.0.0.1:8088" + compat.GOOGLE_CREDENTIALS_PATH
    assert enabled[-1]["payload"]["refreshTokenRoute"].endswith(f"{P}/internal/refreshIndividualConnectorToken")


async def test_our_profile_answers_the_bare_connector(ours: Deployment, idp: FakeOAuthProvider) -> None:
    await ours.configure_google(idp, "cid-ours")
    answer = await ours.legacy_consent(idp, "cid-ours", FRONTEND_PAGE)
    assert answer.status_code == 201, answer.text
    assert answer.json()["key"] == "googleWorkspace" and "message" not in answer.json()
    enabled = [e for e in await ours.events() if e["eventType"] == "appEnabled"]
    assert enabled[-1]["payload"]["credentialsRoute"].endswith(f"{P}/internal/credentials/googleWorkspace")


async def test_the_configuration_managers_credentials_route_serves_the_old_payload(
    pipeshub: Deployment, idp: FakeOAuthProvider
) -> None:
    await pipeshub.configure_google(idp, "cid-creds")
    assert (await pipeshub.legacy_consent(idp, "cid-creds", FRONTEND_PAGE)).status_code == 201
    # the old consumer: GET with its orgId/userId body, a service token without exp
    body = {"orgId": ORG, "userId": USER, "scopes": ["fetch:config"]}
    answer = await pipeshub.http.request(
        "GET", compat.GOOGLE_CREDENTIALS_PATH, json=body, headers=pipeshub.python_service()
    )
    assert answer.status_code == 200, answer.text
    creds = answer.json()
    assert set(creds) == {"access_token", "access_token_expiry_time"}  # the refresh token stays here
    assert idp.is_access_token_valid(creds["access_token"])
    assert abs(creds["access_token_expiry_time"] / 1000 - (time.time() + 3600)) < 120

    refreshed = await pipeshub.http.post(
        f"{P}/internal/refreshIndividualConnectorToken", json=body, headers=pipeshub.python_service()
    )
    assert refreshed.status_code == 200, refreshed.text
    after = await pipeshub.http.get(compat.GOOGLE_CREDENTIALS_PATH, headers=pipeshub.python_service())
    assert after.json()["access_token"] != creds["access_token"]
    assert idp.is_access_token_valid(after.json()["access_token"])

    someone_else = await pipeshub.http.get(
        compat.GOOGLE_CREDENTIALS_PATH, headers=pipeshub.python_service("65f0000000000000000000bb")
    )
    assert someone_else.status_code == 404


async def test_our_profile_has_no_such_route_and_wants_an_expiry(ours: Deployment) -> None:
    assert (await ours.http.get(compat.GOOGLE_CREDENTIALS_PATH, headers=ours.python_service())).status_code == 404
    r = await ours.http.get(f"{P}/internal/credentials/googleWorkspace", headers=ours.python_service())
    assert r.status_code == 401  # a service token without exp is refused outside the profile


async def test_a_dead_grant_announces_app_disabled(pipeshub: Deployment, idp: FakeOAuthProvider) -> None:
    await pipeshub.configure_google(idp, "cid-dead")
    assert (await pipeshub.legacy_consent(idp, "cid-dead", FRONTEND_PAGE)).status_code == 201
    idp.set_fault("invalid_grant", count=1)
    r = await pipeshub.http.post(
        f"{P}/internal/refreshIndividualConnectorToken", json={"orgId": ORG}, headers=pipeshub.scoped
    )
    assert r.status_code == 409, r.text
    tail = [(e["eventType"], e["payload"].get("status")) for e in await pipeshub.events()][-2:]
    assert tail == [("connectorAuthStatusChanged", "NEEDS_REAUTHENTICATION"), ("appDisabled", None)]
    listed = await pipeshub.http.get(f"{P}/config/googleWorkspace", headers=pipeshub.admin)
    assert listed.json()["isEnabled"] is False and listed.json()["authStatus"] == "NEEDS_REAUTHENTICATION"
    # a new consent brings it back
    assert (await pipeshub.legacy_consent(idp, "cid-dead", FRONTEND_PAGE)).status_code == 200
    assert (await pipeshub.events())[-1]["eventType"] == "appEnabled"


async def test_our_profile_keeps_a_dead_grant_enabled(ours: Deployment, idp: FakeOAuthProvider) -> None:
    await ours.configure_google(idp, "cid-dead-ours")
    assert (await ours.legacy_consent(idp, "cid-dead-ours", FRONTEND_PAGE)).status_code == 201
    idp.set_fault("invalid_grant", count=1)
    r = await ours.http.post(f"{P}/internal/refreshIndividualConnectorToken", json={"orgId": ORG}, headers=ours.scoped)
    assert r.status_code == 409, r.text
    assert (await ours.events())[-1]["eventType"] == "connectorAuthStatusChanged"
    assert (await ours.http.get(f"{P}/config/googleWorkspace", headers=ours.admin)).json()["isEnabled"] is True


async def test_gmail_real_time_updates_are_sync_events(pipeshub: Deployment, idp: FakeOAuthProvider) -> None:
    topic = "projects/acme/topics/gmail-updates"
    await pipeshub.configure_google(idp, "cid-rt", enableRealTimeUpdates=True, topicName=topic)
    await pipeshub.configure_google(idp, "cid-rt", enableRealTimeUpdates=False)
    sync = [e for e in await pipeshub.events() if e["eventType"].startswith("gmail")]
    assert [(e["eventType"], e["payload"]) for e in sync] == [
        ("gmailUpdatesEnabledEvent", {"orgId": ORG, "topicName": topic}),
        ("gmailUpdatesDisabledEvent", {"orgId": ORG}),
    ]
    assert all(set(e) == {"eventId", "eventType", "timestamp", "payload"} for e in sync)


async def test_our_profile_announces_real_time_updates_in_our_shape(ours: Deployment, idp: FakeOAuthProvider) -> None:
    topic = "projects/acme/topics/gmail-updates"
    await ours.configure_google(idp, "cid-rt-ours", enableRealTimeUpdates=True, topicName=topic)
    changed = [e for e in await ours.events() if e["eventType"] == "connectorRealTimeUpdatesChanged"]
    assert [e["payload"] for e in changed] == [
        {"orgId": ORG, "connector": "googleWorkspace", "enabled": True, "topicName": topic}
    ]


async def test_the_old_connector_keys_name_ours(pipeshub: Deployment, ours: Deployment) -> None:
    for alias, key in (("atlassian", "confluence"), ("sharepoint", "sharepointOnline")):
        r = await pipeshub.http.get(f"{P}/config/{alias}", headers=pipeshub.admin)
        assert r.status_code == 200 and r.json()["key"] == key
    assert (await ours.http.get(f"{P}/config/atlassian", headers=ours.admin)).status_code == 404


@pytest.mark.parametrize(("profile", "sent_name"), [("pipeshub", "base_url"), ("none", "baseUrl")])
async def test_the_proxy_sends_base_url_as_the_old_backend_reads_it(
    tmp_path: Path, profile: str, sent_name: str
) -> None:
    env = {"CM_MASTER_KEY": "compat-proxy"}
    with FakeBackend() as backend:
        settings = load_settings(
            env=env, storage="memory", secrets="memory", data_dir=tmp_path, backend_url=backend.base_url, compat=profile
        )
        container = await build_container(settings, env=env)
        transport = httpx.ASGITransport(app=create_app(container))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://cm") as http:
                body = {"auth": {"clientId": "cid"}, "sync": {}, "filters": {}, "baseUrl": "https://app.example"}
                r = await http.put(f"{P}/config/jira", json=body, headers=Deployment(http, container).admin)
        finally:
            await container.aclose()
    assert r.status_code == 200, r.text
    forwarded = json.loads(backend.requests[-1].body)
    assert forwarded == {"auth": {"clientId": "cid"}, "sync": {}, "filters": {}, sent_name: "https://app.example"}


async def test_the_proxy_refuses_a_body_it_cannot_re_encode_with_a_400_and_forwards_nothing(tmp_path: Path) -> None:
    """A lone surrogate is valid JSON syntax but no text: the renamed body could not be encoded
    (it was a 500). It is refused as our own routes refuse it; real non-ASCII text goes through."""
    env = {"CM_MASTER_KEY": "compat-proxy"}
    with FakeBackend() as backend:
        settings = load_settings(
            env=env,
            storage="memory",
            secrets="memory",
            data_dir=tmp_path,
            backend_url=backend.base_url,
            compat="pipeshub",
        )
        container = await build_container(settings, env=env)
        transport = httpx.ASGITransport(app=create_app(container))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://cm") as http:
                headers = {**Deployment(http, container).admin, "Content-Type": "application/json"}
                bad = [
                    b'{"baseUrl":"\\ud800"}',
                    b'{"auth":{"\\udfff":1},"baseUrl":"https://a.example"}',
                    b'{"baseUrl":NaN}',
                ]
                refused = [await http.put(f"{P}/config/jira", content=body, headers=headers) for body in bad]
                fine = await http.put(
                    f"{P}/config/jira", content='{"baseUrl":"https://\u00e9.example"}', headers=headers
                )
        finally:
            await container.aclose()
    for r in refused:
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert refused[0].json()["error"]["metadata"]["errors"][0]["path"] == "baseUrl"
    assert fine.status_code == 200, fine.text
    assert len(backend.requests) == 1  # only the valid body was forwarded
    assert json.loads(backend.requests[0].body) == {"base_url": "https://\u00e9.example"}


@pytest.mark.kafka
async def test_the_broker_gets_gmail_updates_on_sync_events(kafka_bootstrap: str) -> None:
    now = datetime.now(UTC)
    base: dict[str, Any] = {"org_id": ORG, "connector_key": "googleWorkspace", "occurred_at": now}
    on = RealTimeUpdatesChanged(event_id=uuid.uuid4().hex, enabled=True, topic_name="projects/p/topics/t", **base)
    off = RealTimeUpdatesChanged(event_id=uuid.uuid4().hex, enabled=False, topic_name="", **base)
    publisher = KafkaEventPublisher(kafka_bootstrap, profile="pipeshub")
    try:
        await publisher.ensure_topics()
        await publisher.publish([OutboxMessage(1, on), OutboxMessage(2, off)])
    finally:
        await publisher.aclose()
    got = await read_back(kafka_bootstrap, [on.event_id, off.event_id], topics=["sync-events"])
    assert [(r.topic, r.headers["eventType"]) for r in got] == [
        ("sync-events", b"gmailUpdatesEnabledEvent"),
        ("sync-events", b"gmailUpdatesDisabledEvent"),
    ]
    values = [json.loads(r.value or b"") for r in got]
    assert [v["payload"] for v in values] == [{"orgId": ORG, "topicName": "projects/p/topics/t"}, {"orgId": ORG}]
    assert values[0]["timestamp"] == int(now.timestamp() * 1000)


@pytest.mark.parametrize("user", [12345, ["65f0000000000000000000aa"], {"$ne": ""}, True])
async def test_the_credentials_route_refuses_a_user_id_that_is_not_a_string_before_reading_anything(
    pipeshub: Deployment, idp: FakeOAuthProvider, user: Any
) -> None:
    claims = {"orgId": ORG, "userId": user, "scopes": ["fetch:config"]}
    service = {"Authorization": "Bearer " + jwt.encode(claims, pipeshub.container.service_secrets.scoped_jwt_secret)}
    body = {"orgId": ORG, "userId": user, "scopes": ["fetch:config"]}  # as the old consumer sends it
    # no Google Workspace token yet: a lookup first would answer 404, not name the field
    r = await pipeshub.http.request("GET", compat.GOOGLE_CREDENTIALS_PATH, json=body, headers=service)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["metadata"]["errors"][0]["path"] == "userId"

    await pipeshub.configure_google(idp, "cid-user-type")
    assert (await pipeshub.legacy_consent(idp, "cid-user-type", FRONTEND_PAGE)).status_code == 201
    r = await pipeshub.http.get(compat.GOOGLE_CREDENTIALS_PATH, headers=service)
    assert r.status_code == 400 and "access_token" not in r.text  # never the token of whoever is stored
    assert r.json()["error"]["metadata"]["errors"][0]["path"] == "userId"


@pytest.mark.parametrize("claims", [{"userId": ""}, {}])
async def test_the_credentials_route_refuses_a_token_naming_no_user(
    pipeshub: Deployment, idp: FakeOAuthProvider, claims: dict[str, Any]
) -> None:
    # an empty userId skipped the ownership check: whoever's token was stored was handed out
    await pipeshub.configure_google(idp, "cid-no-user")
    assert (await pipeshub.legacy_consent(idp, "cid-no-user", FRONTEND_PAGE)).status_code == 201
    token = jwt.encode(
        {"orgId": ORG, "scopes": ["fetch:config"], **claims}, pipeshub.container.service_secrets.scoped_jwt_secret
    )
    r = await pipeshub.http.get(compat.GOOGLE_CREDENTIALS_PATH, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400 and "access_token" not in r.text, r.text
    assert r.json()["error"]["metadata"]["errors"][0]["path"] == "userId"


async def test_another_users_call_refreshes_nothing(pipeshub: Deployment, idp: FakeOAuthProvider) -> None:
    idp.access_token_ttl = 1
    await pipeshub.configure_google(idp, "cid-other-user")
    assert (await pipeshub.legacy_consent(idp, "cid-other-user", FRONTEND_PAGE)).status_code == 201
    await asyncio.sleep(1.2)  # the stored token expired: any credentials read would refresh it
    before = idp.stats()["refresh_grants"]
    r = await pipeshub.http.get(
        compat.GOOGLE_CREDENTIALS_PATH, headers=pipeshub.python_service("65f0000000000000000000bb")
    )
    assert r.status_code == 404, r.text
    assert idp.stats()["refresh_grants"] == before  # the token was not refreshed for a caller refused it
    r = await pipeshub.http.get(compat.GOOGLE_CREDENTIALS_PATH, headers=pipeshub.python_service())
    assert r.status_code == 200, r.text
    assert idp.stats()["refresh_grants"] == before + 1  # its owner's call does refresh it
