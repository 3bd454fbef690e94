"""OAuthService + TokenRefresher + HttpxOAuthClient against a real-HTTP fake OAuth/OIDC provider.

Provider shapes: Google-like (PKCE, ID token, offline params), Microsoft-like (tenant in the URL
path, through a gateway that maps it onto the fake's routes), Atlassian-like (audience, no PKCE,
rotating refresh tokens), a custom provider found by OIDC discovery. Then faults, security
properties, and several refreshers sharing one SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from attrs import define, evolve, field

from adapters.crypto import Aead, Keyring
from adapters.http.oauth_client import HttpxOAuthClient
from adapters.memory import (
    MemoryKeyValueStore,
    MemoryLeaseLock,
    MemoryOAuthStateStore,
    MemoryOutboxReader,
    MemoryStorage,
)
from adapters.sqlite import SQLiteDatabase, SQLiteLeaseLock, SQLiteUnitOfWork
from adapters.system import ManualClock, SecureIds, SystemRandom
from connector_core.catalog import Catalog, CatalogEntry, OAuthSpec, load_default_catalog
from connector_core.errors import (
    ConnectorManagerError,
    IdTokenInvalid,
    InvalidState,
    OAuthError,
    RetryableProviderError,
)
from connector_core.model.connector import AuthState
from connector_core.model.events import TokenEvent
from connector_core.ports.oauth_provider import ClientCredentials
from connector_core.services.connectors import ConfigUpdate, ConnectorService
from connector_core.services.context import ServiceContext
from connector_core.services.oauth import CallbackResult, OAuthService
from connector_core.services.providers import ResolvedProvider
from connector_core.services.redirects import OAuthSettings
from connector_core.services.refresh import RefreshReport, TokenRefresher
from connector_core.tokens import TokenRecord, TokenSet, TokenStatus
from tests.fakes.oauth_provider import FakeOAuthProvider

ORG, USER = "org-int", "user-int"
BASE = "http://localhost:3000"
CLIENT_ID, CLIENT_SECRET = "cm-client", "PLANTED-SECRET-0f9a8b7c-5d4e3f2a1b0c9d8e"
TENANT = "contoso-tenant"
DRIVE = "https://www.googleapis.com/auth/drive.readonly"


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOAuthProvider]:
    with FakeOAuthProvider() as idp:
        yield idp


@pytest.fixture
def idp(provider: FakeOAuthProvider) -> FakeOAuthProvider:
    provider.reset()
    provider.register_client(CLIENT_ID, CLIENT_SECRET)
    return provider


class TenantGateway(httpx.AsyncBaseTransport):
    """Serves Microsoft-style ``/{tenant}/oauth2/v2.0/...`` URLs from the fake's root routes,
    recording the paths it was asked for."""

    ROUTES: ClassVar[dict[str, str]] = {
        "/oauth2/v2.0/authorize": "/authorize",
        "/oauth2/v2.0/token": "/token",
        "/discovery/v2.0/keys": "/jwks",
    }

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.paths.append(path)
        prefix = f"/{TENANT}"
        if path.startswith(prefix) and path[len(prefix) :] in self.ROUTES:
            request.url = request.url.copy_with(path=self.ROUTES[path[len(prefix) :]])
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def _patched(entry: CatalogEntry, **oauth: Any) -> CatalogEntry:
    assert entry.oauth is not None
    return evolve(entry, oauth=evolve(entry.oauth, **oauth))


def provider_catalog(idp: FakeOAuthProvider) -> Catalog:
    """The built-in catalog with Google, OneDrive and Confluence pointed at the fake, plus a
    custom provider known only by its discovery URL."""
    base = idp.base_url
    patched = {
        "googleWorkspace": dict(
            authorize_url=idp.authorize_url,
            token_url=idp.token_url,
            revocation_url=idp.revocation_url,
            jwks_uri=idp.jwks_uri,
            issuer=idp.issuer,
        ),
        "onedrive": dict(
            authorize_url=base + "/{tenantId}/oauth2/v2.0/authorize",
            token_url=base + "/{tenantId}/oauth2/v2.0/token",
            jwks_uri=base + "/{tenantId}/discovery/v2.0/keys",
            issuer=idp.issuer,  # the fake has one issuer; Microsoft's has the tenant in it
        ),
        "confluence": dict(authorize_url=idp.authorize_url, token_url=idp.token_url),
    }
    entries = [_patched(e, **patched[e.key]) if e.key in patched else e for e in load_default_catalog()]
    return Catalog(entries).with_custom_providers(
        [
            {
                "key": "acmeIdp",
                "displayName": "Acme",
                "apps": ["ACME"],
                "oauth": {
                    "authorizeUrl": "",
                    "tokenUrl": "",
                    "discoveryUrl": idp.discovery_url,
                    "defaultScopes": ["openid", "email", "offline_access", "acme.read"],
                    "scopeApps": {"acme.read": "ACME"},
                    "tokenAuthMethod": "client_secret_basic",
                },
            }
        ]
    )


@define
class Env:
    idp: FakeOAuthProvider
    ctx: ServiceContext
    storage: MemoryStorage
    clock: ManualClock
    gateway: TenantGateway
    client: HttpxOAuthClient
    oauth: OAuthService
    refresher: TokenRefresher
    sleeps: SleepRecorder
    connectors: ConnectorService
    seen_tokens: set[str] = field(factory=set)

    async def configure(self, name: str, org: str = ORG, **auth: Any) -> None:
        update = ConfigUpdate(
            base_url=BASE,
            auth={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, **auth},
            sync={},
            filters={},
        )
        await self.connectors.update_configuration(org, USER, name, update)

    async def consent(self, name: str, org: str = ORG, user: str = USER) -> dict[str, str]:
        """Start the authorization and play the browser: the fake consents at once and
        redirects back; answers the callback's query (code, state)."""
        url = await self.oauth.authorization_url(org, user, name, BASE)
        # The browser's request carries state and nonce in its URL: keep httpx's own request
        # log of it out of the captured logs (the product never logs them).
        with quiet("httpx", "httpcore"):
            async with httpx.AsyncClient(transport=self.gateway) as http:
                response = await http.get(url)
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        assert location.startswith(f"{BASE}/connectors/oauth/callback/")
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    async def authorize(self, name: str, org: str = ORG, user: str = USER) -> CallbackResult:
        query = await self.consent(name, org, user)
        return await self.oauth.handle_callback(
            org, user, name, code=query.get("code"), state=query["state"], base_url=BASE
        )

    async def token(self, key: str, org: str = ORG) -> TokenRecord | None:
        async with self.ctx.uow() as uow:
            record = await uow.tokens.get_for_connector(org, key)
        if record is not None:
            self.seen_tokens |= {
                t
                for t in (
                    record.tokens.access_token,
                    record.tokens.refresh_token,
                    record.tokens.id_token,
                )
                if t
            }
        return record

    async def token_events(self, org: str = ORG) -> list[str]:
        messages = await MemoryOutboxReader(self.storage).recent(10_000)
        return [m.event.event_type for m in messages if isinstance(m.event, TokenEvent) and m.event.org_id == org]

    def make_due(self) -> None:
        self.clock.advance(3600 - 600 + 1)


@contextlib.contextmanager
def quiet(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.asynccontextmanager
async def environment(idp: FakeOAuthProvider, *, timeout: float = 5.0) -> AsyncIterator[Env]:
    storage = MemoryStorage()
    clock = ManualClock(datetime.now(UTC))
    ctx = ServiceContext(
        catalog=provider_catalog(idp),
        uow=storage.unit_of_work,
        secrets=MemoryKeyValueStore(),
        clock=clock,
        ids=SecureIds(),
        random=SystemRandom(),
    )
    gateway = TenantGateway()
    http = httpx.AsyncClient(transport=gateway, timeout=timeout)
    client = HttpxOAuthClient(http, timeout=timeout)
    lock = MemoryLeaseLock(clock)
    oauth = OAuthService(ctx, client, MemoryOAuthStateStore(storage), OAuthSettings(), lock=lock)
    sleeps = SleepRecorder()
    refresher = TokenRefresher(ctx, client, lock, oauth=oauth, sleep=sleeps)
    try:
        yield Env(
            idp,
            ctx,
            storage,
            clock,
            gateway,
            client,
            oauth,
            refresher,
            sleeps,
            ConnectorService(ctx),
        )
    finally:
        await client.aclose()
        await http.aclose()


@pytest.fixture
async def env(idp: FakeOAuthProvider) -> AsyncIterator[Env]:
    async with environment(idp) as e:
        yield e


async def authorized_google(env: Env) -> TokenRecord:
    await env.configure("googleWorkspace")
    result = await env.authorize("googleWorkspace")
    assert result.authenticated
    record = await env.token("googleWorkspace")
    assert record is not None
    return record


# -- provider shapes -----------------------------------------------------------------------------


async def test_google_like_flow_refresh_and_revoke(env: Env) -> None:
    await env.configure("googleWorkspace")
    result = await env.authorize("googleWorkspace")
    (asked,) = env.idp.authorize_requests
    assert asked["access_type"] == "offline" and asked["prompt"] == "consent"
    assert asked["code_challenge_method"] == "S256" and asked["code_challenge"]
    assert asked["nonce"] and DRIVE in asked["scope"].split()
    assert result.authenticated
    assert result.redirect_url == f"{BASE}/connectors/googleWorkspace"
    assert result.connector.connector.enabled_apps == ("DRIVE", "GMAIL", "CALENDAR")
    record = await env.token("googleWorkspace")
    assert record is not None and record.tokens.refresh_token is not None
    assert env.idp.is_refresh_token_valid(record.tokens.refresh_token)
    assert env.idp.is_access_token_valid(record.tokens.access_token)

    first_rt = record.tokens.refresh_token
    env.make_due()
    assert (await env.refresher.refresh_due()).refreshed == 1
    refreshed = await env.token("googleWorkspace")
    assert refreshed is not None and refreshed.tokens.refresh_token != first_rt
    assert not env.idp.is_refresh_token_valid(first_rt)  # rotated
    assert env.idp.is_refresh_token_valid(refreshed.tokens.refresh_token)

    view = await env.oauth.revoke(ORG, USER, "googleWorkspace")
    assert view.connector.auth_status.state == AuthState.NOT_AUTHENTICATED
    assert not env.idp.is_refresh_token_valid(refreshed.tokens.refresh_token)
    assert not env.idp.is_access_token_valid(refreshed.tokens.access_token)
    assert await env.token("googleWorkspace") is None
    assert await env.token_events() == ["TOKEN_CREATED", "TOKEN_REFRESHED", "TOKEN_REVOKED"]
    assert env.idp.stats()["invalid_grant"] == 0


async def test_microsoft_like_flow_puts_the_tenant_in_the_path(env: Env) -> None:
    await env.configure("onedrive", tenantId=TENANT)
    result = await env.authorize("onedrive")
    assert result.authenticated
    assert result.connector.connector.enabled_apps == ("ONEDRIVE",)
    assert f"/{TENANT}/oauth2/v2.0/authorize" in env.gateway.paths
    assert f"/{TENANT}/oauth2/v2.0/token" in env.gateway.paths
    assert f"/{TENANT}/discovery/v2.0/keys" in env.gateway.paths  # the ID token was verified
    (asked,) = env.idp.authorize_requests
    assert asked["response_mode"] == "query" and "offline_access" in asked["scope"].split()
    env.make_due()
    assert (await env.refresher.refresh_due()).refreshed == 1
    assert env.gateway.paths.count(f"/{TENANT}/oauth2/v2.0/token") == 2


async def test_atlassian_like_flow_without_pkce_and_with_rotating_refresh_tokens(env: Env) -> None:
    env.idp.always_id_token = False  # Atlassian issues no ID token without openid
    await env.configure("confluence")
    result = await env.authorize("confluence")
    (asked,) = env.idp.authorize_requests
    assert asked["audience"] == "api.atlassian.com" and asked["prompt"] == "consent"
    assert "code_challenge" not in asked and "nonce" not in asked
    assert result.authenticated
    record = await env.token("confluence")
    assert record is not None and record.service_type == "CONFLUENCE"
    used: list[str | None] = [record.tokens.refresh_token]
    for _ in range(2):
        env.make_due()
        assert (await env.refresher.refresh_due()).refreshed == 1
        record = await env.token("confluence")
        assert record is not None
        used.append(record.tokens.refresh_token)
    assert len(set(used)) == 3
    assert [env.idp.is_refresh_token_valid(t) for t in used] == [False, False, True]
    stats = env.idp.stats()
    assert list(stats["refreshes_by_lineage"].values()) == [2]
    assert stats["invalid_grant"] == 0 and stats["refresh_token_reuse"] == 0


async def test_custom_provider_resolved_by_oidc_discovery(env: Env) -> None:
    await env.configure("acmeIdp")
    result = await env.authorize("acmeIdp")
    assert result.authenticated
    assert result.connector.connector.enabled_apps == ("ACME",)
    (asked,) = env.idp.authorize_requests
    assert asked["code_challenge_method"] == "S256" and asked["nonce"]
    env.make_due()
    assert (await env.refresher.refresh_due()).refreshed == 1
    record = await env.token("acmeIdp")
    assert record is not None
    await env.oauth.revoke(ORG, USER, "acmeIdp")  # the revocation endpoint came from discovery
    assert not env.idp.is_refresh_token_valid(record.tokens.refresh_token)


async def test_legacy_code_exchange_verifies_the_account(env: Env) -> None:
    await env.configure("googleWorkspace")
    env.idp.set_user("sub-42", "Person@Example.test")
    redirect = f"{BASE}/connectors/oauth/callback/googleWorkspace"
    scopes = ["openid", "email", "https://www.googleapis.com/auth/gmail.readonly"]
    code = env.idp.issue_code(CLIENT_ID, redirect, scopes)
    view, created = await env.oauth.token_from_code(ORG, USER, "person@example.test", code, BASE)
    assert created and view.connector.enabled_apps == ("GMAIL",)
    code = env.idp.issue_code(CLIENT_ID, redirect, scopes)
    with pytest.raises(ConnectorManagerError) as info:
        await env.oauth.token_from_code(ORG, USER, "other@example.test", code, BASE)
    assert info.value.message == "Account email is different from the consent-giving mail."
    code = env.idp.issue_code(CLIENT_ID, redirect, scopes)
    view, created = await env.oauth.token_from_code(ORG, USER, "PERSON@example.test", code, BASE)
    assert not created


# -- faults --------------------------------------------------------------------------------------


async def test_server_errors_then_success_are_retried(env: Env) -> None:
    await authorized_google(env)
    env.idp.set_fault("server_error", count=2)
    env.make_due()
    assert await env.refresher.refresh_due() == RefreshReport(refreshed=1)
    assert len(env.sleeps.delays) == 2
    assert env.idp.stats()["refresh_grants"] == 1


async def test_rate_limit_retry_after_is_honoured(env: Env) -> None:
    await authorized_google(env)
    env.idp.set_fault("rate_limited", count=1, retry_after=7)
    env.make_due()
    assert await env.refresher.refresh_due() == RefreshReport(refreshed=1)
    assert len(env.sleeps.delays) == 1 and env.sleeps.delays[0] >= 7


async def test_invalid_grant_needs_reauthorization_and_stops_calling(env: Env) -> None:
    await authorized_google(env)
    env.idp.set_fault("invalid_grant", count=1)
    env.make_due()
    assert await env.refresher.refresh_due() == RefreshReport(reauth_required=1)
    record = await env.token("googleWorkspace")
    assert record is not None and record.status == TokenStatus.NEEDS_REAUTHENTICATION
    connector = (await env.connectors.get(ORG, "googleWorkspace")).connector
    assert connector.auth_status.state == AuthState.NEEDS_REAUTHENTICATION
    requests = env.idp.stats()["token_requests"]
    for _ in range(3):
        env.clock.advance(3600)
        assert (await env.refresher.run_once()).total == 0
    assert env.idp.stats()["token_requests"] == requests
    assert await env.token_events() == ["TOKEN_CREATED", "TOKEN_EXPIRED"]
    # A person re-authorizes: the token lives again.
    result = await env.authorize("googleWorkspace")
    assert result.authenticated
    record = await env.token("googleWorkspace")
    assert record is not None and record.status == TokenStatus.ACTIVE


async def test_slow_provider_times_out_and_is_retried(idp: FakeOAuthProvider) -> None:
    async with environment(idp, timeout=0.2) as env:
        await authorized_google(env)
        env.idp.set_fault("slow", count=1, delay=0.6)
        env.make_due()
        assert await env.refresher.refresh_due() == RefreshReport(refreshed=1)
        assert len(env.sleeps.delays) == 1
        record = await env.token("googleWorkspace")
        assert record is not None
        # The timed-out request is still processed by the provider after we gave up on it: it
        # must not harm the token we stored.
        await asyncio.sleep(0.7)
        assert env.idp.is_refresh_token_valid(record.tokens.refresh_token)


async def test_timeout_maps_to_a_retryable_error(idp: FakeOAuthProvider) -> None:
    idp.set_fault("slow", count=1, delay=0.4)
    spec = OAuthSpec(authorize_url=idp.authorize_url, token_url=idp.token_url)
    async with HttpxOAuthClient(timeout=0.1) as client:
        with pytest.raises(RetryableProviderError) as info:
            await client.refresh(spec, ClientCredentials(CLIENT_ID, CLIENT_SECRET), refresh_token="PLANTED-RT")
    assert info.value.status is None and info.value.metadata["reason"] == "timeout"
    assert "PLANTED" not in str(info.value)
    await asyncio.sleep(0.4)


@pytest.mark.parametrize("fault", ["wrong_audience", "wrong_issuer", "bad_signature"])
async def test_untrustworthy_id_token_stores_nothing(env: Env, fault: str) -> None:
    await env.configure("googleWorkspace")
    query = await env.consent("googleWorkspace")
    env.idp.set_fault(fault, count=1)
    with pytest.raises(IdTokenInvalid) as info:
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code=query["code"], state=query["state"])
    assert "eyJ" not in str(info.value)
    assert await env.token("googleWorkspace") is None
    connector = (await env.connectors.get(ORG, "googleWorkspace")).connector
    assert connector.auth_status.state == AuthState.NOT_AUTHENTICATED
    assert not connector.is_enabled
    assert await env.token_events() == []
    assert env.idp.stats()["revocations"] >= 1  # the tokens issued were revoked


# -- security ------------------------------------------------------------------------------------


async def test_replayed_state_is_refused(env: Env) -> None:
    await env.configure("googleWorkspace")
    query = await env.consent("googleWorkspace")
    await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code=query["code"], state=query["state"])
    with pytest.raises(InvalidState):
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code=query["code"], state=query["state"])
    assert env.idp.stats()["authorization_code_grants"] == 1


@pytest.mark.parametrize(("org", "user"), [("org-other", USER), (ORG, "user-other")])
async def test_state_of_another_org_or_user_is_refused(env: Env, org: str, user: str) -> None:
    await env.configure("googleWorkspace")
    await env.configure("googleWorkspace", org="org-other")
    query = await env.consent("googleWorkspace")
    with pytest.raises(InvalidState):
        await env.oauth.handle_callback(org, user, "googleWorkspace", code=query["code"], state=query["state"])
    # Spent: not even its rightful owner can use it now.
    with pytest.raises(InvalidState):
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code=query["code"], state=query["state"])
    assert env.idp.stats()["token_requests"] == 0


class DropVerifier:
    """A provider client that forgets the PKCE verifier (as a buggy client would)."""

    def __init__(self, inner: HttpxOAuthClient) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def exchange_code(self, spec: OAuthSpec, client: ClientCredentials, **kw: Any) -> Mapping[str, Any]:
        return await self.inner.exchange_code(spec, client, **{**kw, "code_verifier": None})


async def test_provider_refuses_a_code_without_its_pkce_verifier(env: Env) -> None:
    await env.configure("googleWorkspace")
    query = await env.consent("googleWorkspace")
    env.oauth.provider = DropVerifier(env.client)
    with pytest.raises(OAuthError) as info:
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code=query["code"], state=query["state"])
    assert info.value.metadata == {"providerError": "invalid_grant"}
    assert await env.token("googleWorkspace") is None
    assert env.idp.stats()["authorization_code_grants"] == 0


async def test_provider_error_callback_marks_the_connector(env: Env) -> None:
    await env.configure("googleWorkspace")
    env.idp.set_fault("access_denied", count=1)
    query = await env.consent("googleWorkspace")
    assert query["error"] == "access_denied" and "code" not in query
    result = await env.oauth.handle_callback(
        ORG, USER, "googleWorkspace", state=query["state"], error=query["error"], base_url=BASE
    )
    assert not result.authenticated
    assert result.redirect_url == f"{BASE}/connectors/googleWorkspace?error=access_denied"
    connector = (await env.connectors.get(ORG, "googleWorkspace")).connector
    assert connector.auth_status.reason == "authorization failed: access_denied"


async def test_no_token_value_reaches_logs_reprs_or_errors(env: Env, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    await env.configure("googleWorkspace")
    query = await env.consent("googleWorkspace")
    codes_and_states = [query["code"], query["state"]]
    result = await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code=query["code"], state=query["state"])
    texts.append(repr(result))
    record = await env.token("googleWorkspace")
    texts.append(repr(record))
    failures: list[ConnectorManagerError] = []
    for fault in ("server_error", "rate_limited", "invalid_grant"):
        env.idp.set_fault(fault, count=5, retry_after=1)
        try:
            await env.refresher.refresh_connector(ORG, "googleWorkspace")
        except ConnectorManagerError as exc:
            failures.append(exc)
        env.idp.clear_faults()
    # Bring it back, refresh for real, then disconnect.
    result = await env.authorize("googleWorkspace")
    await env.token("googleWorkspace")
    texts.append(repr(await env.refresher.refresh_connector(ORG, "googleWorkspace")))
    await env.token("googleWorkspace")
    env.idp.set_fault("server_error", count=1, endpoints=["revoke"])
    await env.oauth.revoke(ORG, USER, "googleWorkspace")
    texts += [repr(e) + str(e) + repr(e.metadata) for e in failures]
    texts.append(caplog.text)
    texts += [repr(r.args) for r in caplog.records]
    assert len(failures) == 3
    assert caplog.records
    secrets = [CLIENT_SECRET, *codes_and_states, *env.seen_tokens]
    assert len(env.seen_tokens) >= 6
    for text in texts:
        for secret in secrets:
            assert secret not in text


# -- several workers, one store ------------------------------------------------------------------


async def test_four_refreshers_share_one_sqlite_file_without_burning_tokens(
    idp: FakeOAuthProvider, tmp_path: Path
) -> None:
    path = tmp_path / f"cm-{uuid.uuid4().hex}.db"
    aead = Aead(Keyring.generate())
    clock = ManualClock(datetime.now(UTC))
    catalog = provider_catalog(idp)
    entry = catalog.get("googleWorkspace")
    assert entry.oauth is not None
    resolved = ResolvedProvider(entry.oauth, ClientCredentials(CLIENT_ID, CLIENT_SECRET))

    async def credentials(org: str, key: str) -> ResolvedProvider:
        return resolved

    def context(db: SQLiteDatabase) -> ServiceContext:
        return ServiceContext(
            catalog=catalog,
            uow=lambda: SQLiteUnitOfWork(db),
            secrets=MemoryKeyValueStore(),
            clock=clock,
            ids=SecureIds(),
            random=SystemRandom(),
        )

    seed_db = SQLiteDatabase(path, sealer=aead)
    databases = [seed_db] + [SQLiteDatabase(path, sealer=aead) for _ in range(4)]
    clients = [HttpxOAuthClient(timeout=10) for _ in range(4)]
    try:
        seed_ctx = context(seed_db)
        scopes = ["openid", DRIVE]
        async with seed_ctx.uow() as uow:
            for i in range(50):
                now = clock.now()
                refresh = idp.mint_refresh_token(CLIENT_ID, scopes)
                record = TokenRecord.create(
                    token_id=f"tok-{i:02d}",
                    org_id=f"org-{i:02d}",
                    connector_key=entry.key,
                    account_id="u",
                    service_type=entry.token_service_type,
                    tokens=TokenSet(
                        access_token=f"at-{i}",
                        obtained_at=now,
                        refresh_token=refresh,
                        expires_at=now + timedelta(hours=1),
                        scopes=frozenset(scopes),
                    ),
                    lifecycle=seed_ctx.lifecycle,
                    now=now,
                    ids=seed_ctx.ids,
                )
                await uow.tokens.add(record)
                await uow.outbox.add(record.pull_events())
            await uow.commit()
        clock.advance(3600 - 600 + 1)
        refreshers = [
            TokenRefresher(
                context(db),
                client,
                SQLiteLeaseLock(db, clock),
                oauth=credentials,
                sleep=SleepRecorder(),
            )
            for db, client in zip(databases[1:], clients, strict=True)
        ]
        reports = await asyncio.gather(*(r.refresh_due(batch_size=100, concurrency=8) for r in refreshers))
        assert sum(r.refreshed for r in reports) == 50
        assert sum(r.failed + r.reauth_required for r in reports) == 0
        stats = idp.stats()
        assert len(stats["refreshes_by_lineage"]) == 50
        assert set(stats["refreshes_by_lineage"].values()) == {1}
        assert stats["invalid_grant"] == 0 and stats["refresh_token_reuse"] == 0
        async with seed_ctx.uow() as uow:
            stored = [await uow.tokens.get(f"tok-{i:02d}") for i in range(50)]
        for found in stored:
            assert found is not None and found.tokens.refresh_token is not None
            assert idp.is_refresh_token_valid(found.tokens.refresh_token)
        # Nothing is due any more: another round calls nobody.
        again = await asyncio.gather(*(r.refresh_due() for r in refreshers))
        assert sum(r.total for r in again) == 0
        assert idp.stats()["refresh_grants"] == 50
    finally:
        for client in clients:
            await client.aclose()
        for db in databases:
            await db.aclose()


# -- the HTTP client's ID token checks -----------------------------------------------------------


class CountingTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _claims(idp: FakeOAuthProvider, **extra: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    return {"iss": idp.issuer, "aud": CLIENT_ID, "sub": "s", "iat": now, "exp": now + 600, **extra}


@contextlib.asynccontextmanager
async def counting_client(
    monotonic: Any = None,
) -> AsyncIterator[tuple[HttpxOAuthClient, CountingTransport]]:
    transport = CountingTransport()
    async with httpx.AsyncClient(transport=transport) as http:
        kw = {"monotonic": monotonic} if monotonic is not None else {}
        async with HttpxOAuthClient(http, timeout=5, **kw) as client:
            yield client, transport


async def test_id_token_with_a_foreign_or_symmetric_key_is_refused(idp: FakeOAuthProvider) -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    spec = OAuthSpec(idp.authorize_url, idp.token_url, jwks_uri=idp.jwks_uri, issuer=idp.issuer)
    own_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = {
        "unknown kid": jwt.encode(_claims(idp), own_key, algorithm="RS256", headers={"kid": "other"}),
        "alg none": jwt.encode(_claims(idp), "", algorithm="none", headers={"kid": idp.kid}),
        "HS256 with the client secret": jwt.encode(
            _claims(idp), CLIENT_SECRET, algorithm="HS256", headers={"kid": idp.kid}
        ),
        "right kid, foreign key": jwt.encode(_claims(idp), own_key, algorithm="RS256", headers={"kid": idp.kid}),
        "not a JWT": "PLANTED.not-a.jwt",
    }
    seconds = [1000.0]
    async with counting_client(monotonic=lambda: seconds[0]) as (client, transport):
        for label, token in forged.items():
            with pytest.raises(IdTokenInvalid) as info:
                await client.verify_id_token(spec, id_token=token, client_id=CLIENT_ID, nonce=None)
            assert token not in str(info.value), label
            assert "PLANTED" not in str(info.value), label
        assert transport.paths.count("/jwks") == 1  # fetched once, then cached
        # An unknown kid after a while refetches the key set once (the provider may have
        # rotated its keys)...
        seconds[0] += 11
        with pytest.raises(IdTokenInvalid):
            await client.verify_id_token(spec, id_token=forged["unknown kid"], client_id=CLIENT_ID, nonce=None)
        assert transport.paths.count("/jwks") == 2
        # ...but not on every attempt: forged kids cannot make us hammer the provider.
        for _ in range(3):
            with pytest.raises(IdTokenInvalid):
                await client.verify_id_token(spec, id_token=forged["unknown kid"], client_id=CLIENT_ID, nonce=None)
        assert transport.paths.count("/jwks") == 2
        # The provider's real tokens still verify from the cache.
        redirect = "http://localhost:3000/cb"
        code = idp.issue_code(CLIENT_ID, redirect, ["openid"])
        creds = ClientCredentials(CLIENT_ID, CLIENT_SECRET)
        body = await client.exchange_code(spec, creds, code=code, redirect_uri=redirect, code_verifier=None)
        await client.verify_id_token(spec, id_token=body["id_token"], client_id=CLIENT_ID, nonce=None)
        assert transport.paths.count("/jwks") == 2


async def test_id_token_checks_nonce_expiry_and_azp(idp: FakeOAuthProvider) -> None:
    spec = OAuthSpec(idp.authorize_url, idp.token_url, jwks_uri=idp.jwks_uri, issuer=idp.issuer)
    redirect = "http://localhost:3000/cb"
    creds = ClientCredentials(CLIENT_ID, CLIENT_SECRET)
    async with counting_client() as (client, _):
        code = idp.issue_code(CLIENT_ID, redirect, ["openid"], nonce="nonce-1")
        body = await client.exchange_code(spec, creds, code=code, redirect_uri=redirect, code_verifier=None)
        id_token = body["id_token"]
        claims = await client.verify_id_token(spec, id_token=id_token, client_id=CLIENT_ID, nonce="nonce-1")
        assert claims["sub"] and claims["nonce"] == "nonce-1"
        with pytest.raises(IdTokenInvalid, match="nonce"):
            await client.verify_id_token(spec, id_token=id_token, client_id=CLIENT_ID, nonce="nonce-2")
        with pytest.raises(IdTokenInvalid, match="aud"):
            await client.verify_id_token(spec, id_token=id_token, client_id="someone-else", nonce=None)
        import jwt

        # Signed by the provider's own key, but expired / missing a claim.
        key = idp._state.key
        expired = jwt.encode(_claims(idp, exp=1_000_000, iat=999_000), key, algorithm="RS256", headers={"kid": idp.kid})
        with pytest.raises(IdTokenInvalid, match="expired"):
            await client.verify_id_token(spec, id_token=expired, client_id=CLIENT_ID, nonce=None)
        no_sub = {k: v for k, v in _claims(idp).items() if k != "sub"}
        unsigned_sub = jwt.encode(no_sub, key, algorithm="RS256", headers={"kid": idp.kid})
        with pytest.raises(IdTokenInvalid, match="sub"):
            await client.verify_id_token(spec, id_token=unsigned_sub, client_id=CLIENT_ID, nonce=None)
        other_azp = jwt.encode(
            _claims(idp, aud=[CLIENT_ID, "x"], azp="x"), key, algorithm="RS256", headers={"kid": idp.kid}
        )
        with pytest.raises(IdTokenInvalid, match="azp"):
            await client.verify_id_token(spec, id_token=other_azp, client_id=CLIENT_ID, nonce=None)


async def test_discovery_must_name_the_issuer_asked_for(idp: FakeOAuthProvider) -> None:
    async with counting_client() as (client, transport):
        doc = await client.discover(idp.issuer + "/")
        assert doc["token_endpoint"] == idp.token_url
        await client.discover(idp.issuer)
        assert transport.paths.count("/.well-known/openid-configuration") == 1  # cached
        with pytest.raises(ConnectorManagerError):
            await client.discover(idp.issuer.replace("127.0.0.1", "localhost"))


def test_retry_after_forms() -> None:
    from adapters.http.oauth_client import parse_retry_after

    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("99999999") == 24 * 3600.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(None) is None
