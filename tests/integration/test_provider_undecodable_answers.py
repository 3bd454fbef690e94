"""An OAuth provider answer that httpx cannot decode (a body that is not the gzip its header
announces) is a provider failure like any other: the API answers 503, never 500, and the
refresher rests the token instead of retrying it every pass."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from attrs import evolve

from connector_core.catalog import Catalog, load_default_catalog
from entrypoints.bootstrap import Container, build_container
from entrypoints.http.app import create_app
from entrypoints.http.auth import issue_scoped_token, issue_user_token
from entrypoints.settings import load_settings
from tests.fakes.backend import FakeBackend

P = "/api/v1/connectors"
FRONTEND = "http://localhost:3000"
TOKENS = {"access_token": "at-1", "refresh_token": "rt-1", "expires_in": 30, "token_type": "Bearer"}


@pytest.fixture
def provider() -> Iterator[FakeBackend]:
    with FakeBackend() as fake:
        yield fake


@pytest.fixture
async def api(provider: FakeBackend, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Container]]:
    entries = []
    for entry in load_default_catalog():
        assert entry.oauth is not None
        oauth = evolve(
            entry.oauth,
            token_url=provider.base_url + "/token",
            revocation_url=None,
            jwks_uri=None,
            issuer=None,
            url_params=(),
        )
        entries.append(evolve(entry, oauth=oauth))
    env = {"CM_MASTER_KEY": "undecodable-tests"}
    settings = load_settings(env=env, storage="memory", secrets="memory", data_dir=tmp_path, run_refresher=False)
    container = await build_container(settings, env=env, catalog=Catalog(entries))
    # one attempt per run: the retries between attempts (real sleeps) are not what is tested here
    container.ctx.policy = evolve(container.ctx.policy, attempts=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(container)), base_url="http://cm") as c:
        yield c, container
    await container.aclose()


def _headers(container: Container) -> tuple[dict[str, str], dict[str, str]]:
    now = int(time.time())
    s = container.service_secrets
    admin = issue_user_token(
        s.jwt_secret, user_id="alice", org_id="acme", email="a@acme.example", admin=True, ttl=600, now=now
    )
    scoped = issue_scoped_token(s.scoped_jwt_secret, scopes=["fetch:config"], ttl=600, now=now, org_id="acme")
    return {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {scoped}"}


async def _callback(client: httpx.AsyncClient, admin: dict[str, str]) -> httpx.Response:
    body = {"baseUrl": FRONTEND, "auth": {"clientId": "cid", "clientSecret": "s3cret"}}
    assert (await client.put(f"{P}/config/jira", json=body, headers=admin)).status_code == 200
    r = await client.get(f"{P}/jira/oauth/authorize", params={"baseUrl": FRONTEND}, headers=admin)
    state = parse_qs(urlsplit(r.json()["authorizationUrl"]).query)["state"][0]
    return await client.get(
        f"{P}/jira/oauth/callback", params={"code": "c-1", "state": state, "baseUrl": FRONTEND}, headers=admin
    )


async def test_an_undecodable_code_exchange_is_503(
    api: tuple[httpx.AsyncClient, Container], provider: FakeBackend
) -> None:
    client, container = api
    admin, _ = _headers(container)
    provider.respond(200, b"not gzip at all", content_encoding="gzip")
    r = await _callback(client, admin)
    assert r.status_code == 503, r.text
    assert "not gzip" not in r.text


async def test_an_undecodable_refresh_is_503_and_the_token_rests(
    api: tuple[httpx.AsyncClient, Container], provider: FakeBackend
) -> None:
    client, container = api
    admin, scoped = _headers(container)
    provider.respond(200, TOKENS)
    r = await _callback(client, admin)
    assert r.status_code == 200 and r.json()["authenticated"] is True, r.text

    provider.respond(200, b"not gzip at all", content_encoding="gzip")
    r = await client.post(f"{P}/internal/refreshIndividualConnectorToken", json={"connector": "jira"}, headers=scoped)
    assert r.status_code == 503, r.text
    asked = len(provider.requests_to("/token"))
    # the token is due (it expires in 30 s) but rests after the failure: the next pass leaves it
    await container.refresher.refresh_due(batch_size=10)
    assert len(provider.requests_to("/token")) == asked
