"""``GET /metrics``: after a scripted sequence of requests and refreshes against the real-HTTP
fake provider, every series has the value the sequence implies, and no org id, secret or raw
path appears in it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.memory.event_publisher import MemoryEventPublisher
from adapters.system import ManualClock
from connector_core.services.relay import OutboxRelay
from entrypoints.bootstrap import Container, build_container
from entrypoints.http.app import create_app
from entrypoints.http.auth import issue_scoped_token, issue_user_token
from entrypoints.settings import load_settings
from tests.fakes.oauth_provider import FakeOAuthProvider
from tests.integration.test_oauth_http_flows import FRONTEND, Client, P, authorize_through_provider, pointed_at

ORG = "org-PLANTED-7c1e"
CLIENT_SECRET = "PLANTED-CLIENT-SECRET-51f0"
RAW_PATH = "/no/such/PLANTED-PATH-0b9d"

Sample = tuple[str, frozenset[tuple[str, str]]]


class OrgClient(Client):
    """The flow helpers' client, signed in to :data:`ORG`."""

    def __init__(self, http: httpx.AsyncClient, container: Container) -> None:
        super().__init__(http, container)
        now, secrets = int(time.time()), container.service_secrets
        admin = issue_user_token(
            secrets.jwt_secret,
            user_id="alice",
            org_id=ORG,
            email="fake.user@example.test",
            admin=True,
            ttl=600,
            now=now,
        )
        scoped = issue_scoped_token(secrets.scoped_jwt_secret, scopes=["fetch:config"], ttl=600, now=now, org_id=ORG)
        self.admin = {"Authorization": f"Bearer {admin}"}
        self.scoped = {"Authorization": f"Bearer {scoped}"}


@pytest.fixture
async def client(idp: FakeOAuthProvider, tmp_path: Path, clock: ManualClock) -> AsyncIterator[OrgClient]:
    env = {"CM_MASTER_KEY": "metrics-tests"}
    settings = load_settings(env=env, storage="memory", secrets="memory", data_dir=tmp_path, run_refresher=False)
    container = await build_container(settings, env=env, catalog=pointed_at(idp), clock=clock)
    # as with events = "kafka": a relay (never run here, so every event stays pending)
    container.relay = OutboxRelay(container.storage.outbox, MemoryEventPublisher(), container.storage.lock, clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(container)), base_url="http://cm") as h:
        yield OrgClient(h, container)
    await container.aclose()


def samples(text: str) -> dict[Sample, float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labelled(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


async def configure(c: OrgClient, idp: FakeOAuthProvider, key: str, **auth: object) -> None:
    idp.register_client(f"cid-{key}", CLIENT_SECRET)
    body = {"baseUrl": FRONTEND, "auth": {"clientId": f"cid-{key}", "clientSecret": CLIENT_SECRET, **auth}}
    r = await c.http.put(f"{P}/config/{key}", json=body, headers=c.admin)
    assert r.status_code == 200, r.text


async def test_the_scraped_series_have_the_values_the_sequence_implies(
    client: OrgClient, idp: FakeOAuthProvider, clock: ManualClock
) -> None:
    c = client
    started = clock.now()
    assert (await c.http.get("/api/v1/health")).status_code == 200
    assert (await c.http.get(f"{P}/active")).status_code == 401
    assert (await c.http.get(RAW_PATH, headers=c.admin)).status_code == 404
    await configure(c, idp, "googleWorkspace", testingMode=True)  # refresh token dies 7 days after consent
    await configure(c, idp, "jira")
    await authorize_through_provider(c, idp, "googleWorkspace")
    await authorize_through_provider(c, idp, "jira")
    clock.advance(600)
    r = await c.http.post(
        f"{P}/internal/refreshIndividualConnectorToken", json={"connector": "googleWorkspace"}, headers=c.scoped
    )
    assert r.status_code == 200, r.text
    idp.set_fault("invalid_grant", count=1)
    failed = await c.http.post(
        f"{P}/internal/refreshIndividualConnectorToken", json={"connector": "jira"}, headers=c.scoped
    )
    assert failed.status_code == 409, failed.text
    listed = await c.http.get(f"{P}/", headers=c.admin)
    google = next(x for x in listed.json() if x["key"] == "googleWorkspace")["token"]
    google_expiry = datetime.fromisoformat(google["accessTokenExpiresAt"].replace("Z", "+00:00"))
    refused = (await c.container.storage.outbox.pending(1))[0]  # as the relay does with a refused event
    await c.container.storage.outbox.set_aside({refused.seq: "MSG_SIZE_TOO_LARGE"})
    pending = len(await c.container.storage.outbox.pending(10_000))

    scraped = await c.http.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(scraped.text)

    requests = {
        (labels["route"], labels["method"], labels["status"]): value
        for (name, key), value in got.items()
        if name == "connector_manager_http_requests_total"
        for labels in [dict(key)]
    }
    assert requests == {
        ("/api/v1/health", "GET", "200"): 1,
        (f"{P}/active", "GET", "401"): 1,
        ("unmatched", "GET", "404"): 1,
        (f"{P}/config/{{name}}", "PUT", "200"): 2,
        (f"{P}/{{name}}/oauth/authorize", "GET", "200"): 2,
        (f"{P}/{{name}}/oauth/callback", "GET", "200"): 2,
        (f"{P}/internal/refreshIndividualConnectorToken", "POST", "200"): 1,
        (f"{P}/internal/refreshIndividualConnectorToken", "POST", "409"): 1,
        (f"{P}/", "GET", "200"): 1,
    }
    count = "connector_manager_http_request_duration_seconds_count"
    assert got[(count, labelled(route=f"{P}/config/{{name}}", method="PUT", status="200"))] == 2
    inf = labelled(route="unmatched", method="GET", status="404", le="+Inf")
    assert got[("connector_manager_http_request_duration_seconds_bucket", inf)] == 1

    refreshes = {k: v for k, v in got.items() if k[0] == "connector_manager_token_refreshes_total"}
    assert refreshes == {
        ("connector_manager_token_refreshes_total", labelled(provider="googleWorkspace", outcome="refreshed")): 1,
        ("connector_manager_token_refreshes_total", labelled(provider="jira", outcome="reauth_required")): 1,
    }
    tokens = {
        dict(k)["connector"] + ":" + dict(k)["state"]: v
        for n, k in got
        if n == "connector_manager_tokens"
        for v in [got[(n, k)]]
    }
    assert {k: v for k, v in tokens.items() if v} == {"googleWorkspace:active": 1, "jira:needs_reauth": 1}
    assert len(tokens) == 2 * 6  # every state of each connector with tokens, 0 or not
    assert got[("connector_manager_token_soonest_expiry_timestamp_seconds", labelled(connector="googleWorkspace"))] == (
        google_expiry.timestamp()
    )
    assert ("connector_manager_token_soonest_expiry_timestamp_seconds", labelled(connector="jira")) not in got
    expiring = {k: v for k, v in got.items() if k[0] == "connector_manager_refresh_tokens_expiring"}
    assert expiring == {
        ("connector_manager_refresh_tokens_expiring", labelled(connector="googleWorkspace", warning="within7Days")): 1
    }
    assert pending > 0
    assert got[("connector_manager_outbox_backlog", frozenset())] == pending
    assert got[("connector_manager_outbox_set_aside", frozenset())] == 1
    assert got[("connector_manager_outbox_relay_lag_seconds", frozenset())] == (clock.now() - started).total_seconds()
    up = {dict(k)["dependency"]: v for n, k in got if n == "connector_manager_dependency_up" for v in [got[(n, k)]]}
    assert up == {check.name: 1 for check in c.container.health_checks}
    assert got[("connector_manager_metrics_read_errors", labelled(part="tokens"))] == 0

    for planted in (ORG, CLIENT_SECRET, "PLANTED-PATH", "acme", "fake.user@example.test"):
        assert planted not in scraped.text


async def test_metrics_need_no_sign_in_and_are_not_an_api_operation(client: OrgClient) -> None:
    r = await client.http.get("/metrics")
    assert r.status_code == 200
    doc = (await client.http.get("/openapi.json")).json()
    assert "/metrics" not in doc["paths"]
    # a scrape counts once it is answered: the first sees no request, the second the first
    assert not [k for k in samples(r.text) if k[0] == "connector_manager_http_requests_total"]
    again = samples((await client.http.get("/metrics")).text)
    assert again[("connector_manager_http_requests_total", labelled(route="/metrics", method="GET", status="200"))] == 1


async def test_routes_are_labelled_by_template_through_mounts_and_odd_methods_are_other(client: OrgClient) -> None:
    c = client
    await c.http.get("/admin/connectors/PLANTED-NAME-1")  # the console (a mount): sign-in page
    await c.http.get("/docs/assets/swagger-ui.css")  # a whole app mounted (static files)
    for method in ("BREW", "PLANTED-METHOD"):  # 405s, with methods nobody knows: one series
        await c.http.request(method, "/api/v1/health")
    text = (await c.http.get("/metrics")).text
    other = labelled(route="/api/v1/health", method="other", status="405")
    assert samples(text)[("connector_manager_http_requests_total", other)] == 2
    requests = {
        (dict(k)["route"], dict(k)["method"]) for n, k in samples(text) if n == "connector_manager_http_requests_total"
    }
    assert requests == {
        ("/admin/connectors/{name}", "GET"),
        ("/docs/assets/{path}", "GET"),
        ("/api/v1/health", "other"),
    }
    assert "PLANTED-NAME" not in text and "PLANTED-METHOD" not in text


async def test_a_worker_serves_its_own_metrics_on_its_port(
    client: OrgClient, idp: FakeOAuthProvider, clock: ManualClock
) -> None:
    """The worker's server runs on a thread; its scrape reads the stores on the worker's loop."""
    from entrypoints.observability.metrics import serve_worker_metrics
    from tests.api.test_serve_process import free_port

    c = client
    await configure(c, idp, "googleWorkspace")
    await authorize_through_provider(c, idp, "googleWorkspace")
    port = free_port()
    _, stop = serve_worker_metrics(c.container, "127.0.0.1", port)
    try:
        clock.advance(3600)  # the token is due: the worker refreshes it
        report = await c.container.refresher.run_once()
        assert report.refreshed == 1
        scraped = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics", timeout=10)
    finally:
        stop()
    got = samples(scraped.text)
    refreshed = labelled(provider="googleWorkspace", outcome="refreshed")
    assert got[("connector_manager_token_refreshes_total", refreshed)] == 1
    assert got[("connector_manager_tokens", labelled(connector="googleWorkspace", state="active"))] == 1
    assert ORG not in scraped.text
