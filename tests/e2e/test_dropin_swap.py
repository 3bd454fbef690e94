"""The swap, end to end, on the real etcd, MongoDB and Kafka (Tansu) servers.

The existing deployment is laid down exactly as it stores it (its etcd keys at the root, its
``es``-style MongoDB with org, users, userGroups and connectorsConfig), then imported with
``connector-manager import`` run as the operator runs it (a dry run first). Then, with
``compat = "pipeshub"`` and ``iam = "mongo-user-groups"``:

* a token the existing service signed, with no admin claim, manages connectors (its user is in
  the org's admin group), and a member of a custom group named "Admins" is refused;
* the imported Google token refreshes against the test OAuth provider with the imported
  refresh token;
* a consumer written against the existing service's contract works unchanged: it reads
  ``entity-events``, ``token-events`` and ``sync-events`` from the broker as it always did, and
  fetches the token from the ``credentialsRoute`` the ``appEnabled`` event names, with a service
  token minted as its Python services mint them (no expiry).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from bson import ObjectId

from entrypoints.bootstrap import build_container
from entrypoints.http.app import create_app
from entrypoints.settings import load_settings
from tests.cli import clean_env, run_cli
from tests.contract.backends.kafka import Received, read_back
from tests.fakes.oauth_provider import FakeOAuthProvider
from tests.fakes.pipeshub import SECRET_KEY, SeedDeployment, seed_deployment
from tests.integration.test_oauth_http_flows import pointed_at

pytestmark = [pytest.mark.mongo, pytest.mark.etcd, pytest.mark.kafka, pytest.mark.slow]

P = "/api/v1/connectors"
FRONTEND = "https://app.acme.example"
TOPIC = "projects/acme/topics/gmail"
DRIVE = "https://www.googleapis.com/auth/drive.readonly"
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeOAuthProvider]:
    with FakeOAuthProvider(rotate_refresh_tokens=True) as provider:
        yield provider


@pytest.fixture
async def seed(etcd_endpoint: tuple[str, int], mongo_url: str) -> AsyncIterator[SeedDeployment]:
    """The existing deployment, at the root of etcd as in production."""
    async with seed_deployment(etcd_endpoint, mongo_url) as deployment:
        yield deployment


def write_config(
    tmp_path: Path, seed: SeedDeployment, mongo_url: str, etcd_endpoint: tuple[str, int], kafka_bootstrap: str
) -> Path:
    config = tmp_path / "cm.toml"
    config.write_text(
        f"""
storage = "mongo"
secrets = "etcd"
events = "kafka"
compat = "pipeshub"
iam = "mongo-user-groups"
public_url = "http://cm.acme.internal:3000"
frontend_url = "{FRONTEND}"
mongo_url = "{mongo_url}"
mongo_database = "cm_{uuid.uuid4().hex[:8]}"
etcd_endpoint = "{etcd_endpoint[0]}:{etcd_endpoint[1]}"
etcd_namespace = "/cm-{uuid.uuid4().hex[:8]}"
kafka_bootstrap = "{kafka_bootstrap}"
run_refresher = false
iam_mongo_url = "{mongo_url}"
iam_mongo_database = "{seed.db.name}"
""",
        encoding="utf-8",
    )
    return config


class OldConsumer:
    """Reads events and calls routes exactly as the existing service's Python consumers do."""

    def __init__(self, http: httpx.AsyncClient, seed: SeedDeployment, org: ObjectId, user: ObjectId) -> None:
        self.http, self.seed, self.org, self.user = http, seed, org, user

    @staticmethod
    def parse(record: Received) -> Doc:
        value: Any = json.loads((record.value or b"").decode("utf-8"))
        if isinstance(value, str):  # it also copes with double-encoded JSON
            value = json.loads(value)
        assert isinstance(value, dict) and value.get("eventType"), value
        return value

    def headers(self) -> dict[str, str]:
        # its scoped token: {orgId, userId, scopes}, no iat, no exp, signed with scopedJwtSecret
        claims = {"orgId": str(self.org), "userId": str(self.user), "scopes": ["fetch:config"]}
        return {"Authorization": "Bearer " + jwt.encode(claims, self.seed.scoped_jwt_secret, algorithm="HS256")}

    async def get_individual_token(self, credentials_route: str) -> Doc:
        body = {"orgId": str(self.org), "userId": str(self.user), "scopes": ["fetch:config"]}
        r = await self.http.request("GET", urlsplit(credentials_route).path, json=body, headers=self.headers())
        assert r.status_code == 200, r.text
        creds: Doc = r.json()
        return creds

    async def refresh_token(self, refresh_token_route: str) -> None:
        body = {"orgId": str(self.org), "userId": str(self.user), "scopes": ["fetch:config"]}
        r = await self.http.post(urlsplit(refresh_token_route).path, json=body, headers=self.headers())
        assert r.status_code == 200, r.text


async def test_the_existing_deployment_swapped_for_this_one(
    tmp_path: Path,
    seed: SeedDeployment,
    idp: FakeOAuthProvider,
    mongo_url: str,
    etcd_endpoint: tuple[str, int],
    kafka_bootstrap: str,
) -> None:
    # -- the existing deployment ---------------------------------------------------------------
    idp.register_client("seed-google-client", "seed-google-secret")
    refresh = idp.mint_refresh_token("seed-google-client", ["openid", "email", DRIVE])
    org = await seed.org(account_type="individual")
    alice = await seed.user(org, "alice@acme.example")
    bob = await seed.user(org, "bob@acme.example")
    await seed.group(org, "admin", [alice])
    await seed.group(org, "custom", [bob], name="Admins")
    await seed.group(org, "everyone", [alice, bob])
    await seed.secret_keys()
    await seed.endpoints(FRONTEND, "http://cm.acme.internal:3000")
    await seed.google_oauth_config("seed-google-client", "seed-google-secret", real_time=True, topic=TOPIC)
    await seed.google_individual_credentials(
        alice,
        access_token="SEED-ACCESS",
        refresh_token=refresh,
        expiry_ms=int((time.time() + 1800) * 1000),
        real_time=True,
        topic=TOPIC,
    )
    await seed.connector_doc(org, "Google Workspace", enabled=True, by=alice)
    await seed.atlassian_config(org, client_id="at-client", client_secret="at-secret")
    await seed.connector_doc(org, "Atlassian", enabled=False, by=alice)
    etcd_before, mongo_before = await seed.snapshot(), await seed.mongo_snapshot()

    # -- the import, as the operator runs it --------------------------------------------------
    config = write_config(tmp_path, seed, mongo_url, etcd_endpoint, kafka_bootstrap)
    env = clean_env(CM_MASTER_KEY="swap-master-key", CM_LEGACY_SECRET_KEY=SECRET_KEY)
    args = ("import", "--config", str(config), "--data-dir", str(tmp_path / "data"))
    dry = run_cli(*args, "--dry-run", env=env, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("Dry run: nothing was written.")
    assert "Summary: 4 would import, 0 skipped, 0 failed." in dry.stdout
    assert "[" in dry.stderr and "4/4" in dry.stderr  # the progress bar
    done = run_cli(*args, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Summary: 4 imported, 0 skipped, 0 failed." in done.stdout
    again = run_cli(*args, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "Summary: 0 imported, 4 skipped, 0 failed." in again.stdout
    for secret in ("seed-google-secret", "SEED-ACCESS", refresh, "at-secret", SECRET_KEY):
        assert secret not in dry.stdout + dry.stderr + done.stdout + done.stderr
    assert await seed.snapshot() == etcd_before  # the source, untouched
    assert await seed.mongo_snapshot() == mongo_before

    # -- this service in its place -------------------------------------------------------------
    settings = load_settings(config, env=env, data_dir=tmp_path / "data")
    container = await build_container(settings, env=env, catalog=pointed_at(idp))
    assert container.relay is not None
    transport = httpx.ASGITransport(app=create_app(container))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://cm.acme.internal:3000") as http:
            await swapped(http, container.relay.drain, seed, idp, org, alice, bob, refresh, kafka_bootstrap, container)
    finally:
        await container.aclose()


async def swapped(
    http: httpx.AsyncClient,
    drain: Any,
    seed: SeedDeployment,
    idp: FakeOAuthProvider,
    org: ObjectId,
    alice: ObjectId,
    bob: ObjectId,
    refresh: str,
    kafka_bootstrap: str,
    container: Any,
) -> None:
    admin = {"Authorization": "Bearer " + seed.user_token(alice, org, "alice@acme.example")}
    member = {"Authorization": "Bearer " + seed.user_token(bob, org, "bob@acme.example")}
    assert (
        jwt.decode(admin["Authorization"][7:], options={"verify_signature": False})
        .keys()
        .isdisjoint({"isAdmin", "role", "roles"})
    )

    # its admin manages connectors; a member of a group only named Admins does not
    listed = await http.get(f"{P}/", headers=admin)
    assert listed.status_code == 200, listed.text
    assert (await http.get(f"{P}/", headers=member)).status_code == 403
    google = await http.get(f"{P}/config/googleWorkspace", headers=admin)
    assert google.json()["isEnabled"] is True and google.json()["authStatus"] == "AUTHENTICATED"
    assert (await http.get(f"{P}/config/atlassian", headers=admin)).json()["key"] == "confluence"
    off = {"baseUrl": FRONTEND, "auth": {"clientId": "seed-google-client", "enableRealTimeUpdates": False}}
    assert (await http.put(f"{P}/config/googleWorkspace", json=off, headers=admin)).status_code == 200
    for enabled in (False, True):
        r = await http.post(f"{P}/toggle/googleWorkspace", json={"enabled": enabled}, headers=admin)
        assert r.status_code == 200, r.text

    # the imported token refreshes with the imported refresh token
    consumer = OldConsumer(http, seed, org, alice)
    grants = idp.stats()["refresh_grants"]
    await drain()
    outbox = [m.event for m in await container.storage.outbox.recent(1000, org_id=str(org))]
    received = await read_back(
        kafka_bootstrap, [e.event_id for e in outbox], topics=["entity-events", "token-events", "sync-events"]
    )
    events = [(r.topic, consumer.parse(r)) for r in received]
    app_enabled = [v for t, v in events if t == "entity-events" and v["eventType"] == "appEnabled"][-1]["payload"]
    for field in ("orgId", "appGroup", "appGroupId", "credentialsRoute", "refreshTokenRoute", "apps", "syncAction"):
        assert field in app_enabled
    assert app_enabled["orgId"] == str(org) and app_enabled["appGroup"] == "Google Workspace"
    assert app_enabled["syncAction"] == "immediate"
    google_events = [v for t, v in events if t == "entity-events" and v["payload"]["connector"] == "googleWorkspace"]
    assert [v["eventType"] for v in google_events][-2:] == ["appDisabled", "appEnabled"]  # one partition: in order
    sync = [v for t, v in events if t == "sync-events"]
    assert [(v["eventType"], v["payload"]) for v in sync] == [("gmailUpdatesDisabledEvent", {"orgId": str(org)})]

    await consumer.refresh_token(app_enabled["refreshTokenRoute"])
    assert idp.stats()["refresh_grants"] == grants + 1
    creds = await consumer.get_individual_token(app_enabled["credentialsRoute"])
    assert set(creds) == {"access_token", "access_token_expiry_time"}
    assert creds["access_token"] != "SEED-ACCESS" and idp.is_access_token_valid(creds["access_token"])
    assert not idp.is_refresh_token_valid(refresh)  # rotated at the provider: the new one is stored here
    again = await http.post(
        f"{P}/internal/refreshIndividualConnectorToken",
        json={"orgId": str(org), "userId": str(alice), "scopes": ["fetch:config"]},
        headers=consumer.headers(),
    )
    assert again.status_code == 200, again.text

    await drain()
    newest = [m.event for m in await container.storage.outbox.recent(1000, org_id=str(org))]
    refreshed = [e.event_id for e in newest if e.event_type == "TOKEN_REFRESHED"]
    assert len(refreshed) == 2
    tokens = [consumer.parse(r) for r in await read_back(kafka_bootstrap, refreshed, topics=["token-events"])]
    assert {t["eventId"] for t in tokens} == set(refreshed)
    for token in tokens:
        assert token["eventType"] == "TOKEN_REFRESHED" and token["serviceType"] == "GOOGLE_DRIVE"
        for field in ("eventId", "tokenReferenceId", "accountId", "timestamp"):
            assert field in token
        assert token["accountId"] == str(alice)
