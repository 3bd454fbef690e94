"""OAuthService: authorize URL, callback, legacy code exchange, revocation (memory adapters)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from attrs import define, field
from jsonschema import Draft202012Validator

from adapters.memory import MemoryKeyValueStore, MemoryLeaseLock, MemoryOAuthStateStore, MemoryOutboxReader
from adapters.memory.storage import MemoryStorage
from adapters.system import ManualClock
from connector_core.catalog import Catalog, OAuthSpec, thaw
from connector_core.errors import (
    Conflict,
    DomainRuleViolation,
    IdTokenInvalid,
    InvalidState,
    NotConfigured,
    NoTokens,
    OAuthError,
    PermissionDenied,
    ProviderError,
    ReauthorizationRequired,
    UnknownConnector,
    ValidationError,
)
from connector_core.model.connector import AuthState
from connector_core.model.events import AppEnabled, DomainEvent, SyncAction, TokenEvent
from connector_core.ports.oauth_provider import ClientCredentials
from connector_core.ports.unit_of_work import UnitOfWork
from connector_core.services.connectors import ConfigUpdate, ConnectorService
from connector_core.services.context import ServiceContext
from connector_core.services.oauth import OAuthService, pkce_challenge, state_hash
from connector_core.services.providers import url_param_error
from connector_core.services.redirects import OAuthSettings, origin_of
from connector_core.tokens import TokenStatus
from tests.conftest import CountingIds, SeededRandom

ORG, USER = "org-1", "user-1"
BASE = "https://app.example.com"
CLIENT_ID, CLIENT_SECRET = "client-id-1", "PLANTED-CLIENT-SECRET"
DRIVE = "https://www.googleapis.com/auth/drive.readonly"
GMAIL = "https://www.googleapis.com/auth/gmail.readonly"
CALENDAR = "https://www.googleapis.com/auth/calendar.readonly"


@define
class Call:
    name: str
    spec: OAuthSpec
    kwargs: dict[str, Any]


@define
class RecordingProvider:
    """An OAuthProviderClient that records calls and answers from queues."""

    calls: list[Call] = field(factory=list)
    exchange: list[Mapping[str, Any] | Exception] = field(factory=list)
    claims: dict[str, Any] = field(factory=lambda: {"email": "Person@Example.com", "sub": "s1"})
    verify_error: Exception | None = None
    revoke_error: Exception | None = None
    on_revoke: Callable[[], Awaitable[None]] | None = None
    discovery: dict[str, Any] = field(factory=dict)
    n: int = 0

    def named(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def token_response(self, scopes: Sequence[str], *, id_token: bool = True) -> dict[str, Any]:
        self.n += 1
        body: dict[str, Any] = {
            "access_token": f"PLANTED-AT-{self.n}",
            "refresh_token": f"PLANTED-RT-{self.n}",
            "expires_in": 3600,
            "token_type": "Bearer",
            "scope": " ".join(scopes),
        }
        if id_token:
            body["id_token"] = f"PLANTED-IDT-{self.n}"
        return body

    async def exchange_code(
        self,
        spec: OAuthSpec,
        client: ClientCredentials,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None,
    ) -> Mapping[str, Any]:
        self.calls.append(
            Call(
                "exchange",
                spec,
                {
                    "client": client,
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": code_verifier,
                },
            )
        )
        answer = self.exchange.pop(0) if self.exchange else self.token_response([DRIVE, "openid"])
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def refresh(
        self,
        spec: OAuthSpec,
        client: ClientCredentials,
        *,
        refresh_token: str,
        scopes: Sequence[str] = (),
    ) -> Mapping[str, Any]:
        raise AssertionError("not used here")

    async def revoke(self, spec: OAuthSpec, client: ClientCredentials, *, token: str, token_type_hint: str) -> None:
        self.calls.append(Call("revoke", spec, {"token": token, "hint": token_type_hint}))
        if self.on_revoke is not None:
            await self.on_revoke()
        if self.revoke_error is not None:
            raise self.revoke_error

    async def verify_id_token(
        self, spec: OAuthSpec, *, id_token: str, client_id: str, nonce: str | None
    ) -> Mapping[str, Any]:
        self.calls.append(Call("verify", spec, {"id_token": id_token, "client_id": client_id, "nonce": nonce}))
        if self.verify_error is not None:
            raise self.verify_error
        return dict(self.claims)

    async def discover(self, issuer: str) -> Mapping[str, Any]:
        self.calls.append(Call("discover", OAuthSpec("", ""), {"issuer": issuer}))
        return dict(self.discovery)


@define
class Sleeper:
    """The lease lock's sleep: records the delays and runs ``hook`` (with the count so far)."""

    delays: list[float] = field(factory=list)
    hook: Callable[[int], Awaitable[None]] | None = None

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.hook is not None:
            await self.hook(len(self.delays))


@define
class Env:
    ctx: ServiceContext
    storage: MemoryStorage
    clock: ManualClock
    provider: RecordingProvider
    oauth: OAuthService
    connectors: ConnectorService
    outbox: MemoryOutboxReader
    lock: MemoryLeaseLock
    sleeper: Sleeper

    async def configure(
        self,
        name: str = "googleWorkspace",
        org: str = ORG,
        *,
        secret: bool = True,
        **auth: Any,
    ) -> None:
        values: dict[str, Any] = {"clientId": CLIENT_ID, **auth}
        if secret:
            values["clientSecret"] = CLIENT_SECRET
        update = ConfigUpdate(base_url=BASE, auth=values, sync={}, filters={})
        await self.connectors.update_configuration(org, USER, name, update)

    async def events(self) -> list[DomainEvent]:
        return [m.event for m in await self.outbox.recent(10_000)]

    async def token_events(self) -> list[str]:
        return [e.event_type for e in await self.events() if isinstance(e, TokenEvent)]

    async def authorize(self, name: str = "googleWorkspace", org: str = ORG, user: str = USER) -> dict[str, str]:
        url = await self.oauth.authorization_url(org, user, name, BASE)
        return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}

    async def connector(self, name: str = "googleWorkspace", org: str = ORG) -> Any:
        return (await self.connectors.get(org, name)).connector

    async def token(self, key: str = "googleWorkspace", org: str = ORG) -> Any:
        async with self.ctx.uow() as uow:
            return await uow.tokens.get_for_connector(org, key)


def make_env(
    catalog: Catalog,
    t0: Any,
    settings: OAuthSettings | None = None,
    uow: Callable[[], UnitOfWork] | None = None,
) -> Env:
    storage = MemoryStorage()
    clock = ManualClock(t0)
    ctx = ServiceContext(
        catalog=catalog,
        uow=uow or storage.unit_of_work,
        secrets=MemoryKeyValueStore(),
        clock=clock,
        ids=CountingIds(),
        random=SeededRandom(),
    )
    provider = RecordingProvider()
    sleeper = Sleeper()
    lock = MemoryLeaseLock(clock, sleep=sleeper)
    oauth = OAuthService(
        ctx,
        provider,
        MemoryOAuthStateStore(storage),
        settings or OAuthSettings(allowed_redirect_origins=(BASE,)),
        lock=lock,
    )
    connectors = ConnectorService(ctx)
    return Env(ctx, storage, clock, provider, oauth, connectors, MemoryOutboxReader(storage), lock, sleeper)


@pytest.fixture
def env(catalog: Catalog, t0: Any) -> Env:
    return make_env(catalog, t0)


# -- authorization URL -------------------------------------------------------------------------


async def test_google_authorization_url_carries_pkce_nonce_and_offline_params(env: Env) -> None:
    await env.configure()
    url = await env.oauth.authorization_url(ORG, USER, "googleWorkspace", BASE + "/")
    assert url.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q["response_type"] == "code"
    assert q["client_id"] == CLIENT_ID
    assert q["redirect_uri"] == f"{BASE}/connectors/oauth/callback/googleWorkspace"
    google = env.ctx.catalog.get("google").oauth
    assert google is not None
    assert q["scope"].split(" ") == list(google.default_scopes)
    assert q["access_type"] == "offline" and q["prompt"] == "consent"
    assert q["code_challenge_method"] == "S256"
    assert q["nonce"]
    # Only the hash of the state is stored, with the verifier whose challenge was sent.
    assert list(env.storage.states) == [state_hash(q["state"])]
    pending = await env.oauth.states.take(state_hash(q["state"]))
    assert pending is not None
    assert pending.code_verifier is not None and len(pending.code_verifier) >= 43
    assert pkce_challenge(pending.code_verifier) == q["code_challenge"]
    assert pending.nonce == q["nonce"]
    assert (pending.org_id, pending.user_id, pending.connector_key) == (
        ORG,
        USER,
        "googleWorkspace",
    )
    assert pending.expires_at == env.clock.now() + timedelta(minutes=10)
    assert pending.redirect_uri == q["redirect_uri"]


def test_state_hash_is_sha256_hex() -> None:
    assert state_hash("abc") == hashlib.sha256(b"abc").hexdigest()


async def test_microsoft_url_has_the_tenant_in_its_path(env: Env) -> None:
    await env.configure("onedrive", tenantId="contoso")
    url = await env.oauth.authorization_url(ORG, USER, "onedrive", BASE)
    assert url.startswith("https://login.microsoftonline.com/contoso/oauth2/v2.0/authorize?")
    q = parse_qs(urlsplit(url).query)
    assert "offline_access" in q["scope"][0].split()
    assert q["response_mode"] == ["query"]


async def test_atlassian_url_has_audience_and_no_pkce_or_nonce(env: Env) -> None:
    await env.configure("confluence")
    q = await env.authorize("confluence")
    assert q["audience"] == "api.atlassian.com" and q["prompt"] == "consent"
    assert "code_challenge" not in q and "nonce" not in q
    pending = await env.oauth.states.take(state_hash(q["state"]))
    assert pending is not None and pending.code_verifier is None and pending.nonce is None


async def test_slack_scopes_are_joined_by_its_separator(env: Env) -> None:
    await env.configure("slack")
    q = await env.authorize("slack")
    assert q["scope"] == "channels:history,channels:read,users:read"


async def test_missing_client_configuration_is_named(env: Env) -> None:
    with pytest.raises(NotConfigured) as info:
        await env.oauth.authorization_url(ORG, USER, "googleWorkspace", BASE)
    assert info.value.metadata["missing"] == ["auth.clientId", "auth.clientSecret"]
    await env.configure(secret=False)
    with pytest.raises(NotConfigured) as info:
        await env.oauth.authorization_url(ORG, USER, "googleWorkspace", BASE)
    assert info.value.metadata["missing"] == ["auth.clientSecret"]
    assert env.storage.states == {}


async def test_missing_tenant_is_named(env: Env) -> None:
    await env.configure("onedrive")
    with pytest.raises(NotConfigured) as info:
        await env.oauth.authorization_url(ORG, USER, "onedrive", BASE)
    assert info.value.metadata["missing"] == ["auth.tenantId"]


async def test_tenant_cannot_inject_into_provider_urls(env: Env) -> None:
    await env.configure("onedrive", tenantId="evil.example/x")
    with pytest.raises(ValidationError) as info:
        await env.oauth.authorization_url(ORG, USER, "onedrive", BASE)
    assert info.value.errors[0]["path"] == "auth.tenantId"


#: Microsoft tenant ids as Entra ID names them: a GUID, a verified domain, or a well-known name
VALID_TENANTS = ["8eaef023-2b34-4da1-9baa-8bc8c9d6a490", "common", "organizations", "contoso.onmicrosoft.com"]


@pytest.mark.parametrize("tenant", ["a..b", "contoso\n", "a.", "a" * 129])
async def test_a_tenant_the_configuration_schema_refuses_is_refused_by_the_url_builder(env: Env, tenant: str) -> None:
    # the URL builder's own rule let these through (it only refused a leading dot or dash and
    # other characters), though the schema refuses them: one rule, the catalog's, for both
    await env.configure("onedrive", tenantId=tenant)
    with pytest.raises(ValidationError) as info:
        await env.oauth.authorization_url(ORG, USER, "onedrive", BASE)
    assert [e["path"] for e in info.value.errors] == ["auth.tenantId"]


@pytest.mark.parametrize(
    "value",
    [
        *VALID_TENANTS,
        "contoso",
        "a" * 128,
        "..",
        ".",
        ".a",
        "a..b",
        "a.",
        "-a",
        "a_b",
        "a/b",
        "a%2e",
        "contoso\n",
        " a",
        "a" * 129,
        "",
        "\u00e9",
    ],
)
def test_the_url_builder_and_the_configuration_schema_accept_the_same_url_params(catalog: Catalog, value: str) -> None:
    checked = 0
    for entry in catalog:
        for param in entry.oauth.url_params if entry.oauth else ():
            field_schema = thaw(entry.config_schema)["properties"]["auth"]["properties"][param]
            saved = Draft202012Validator(field_schema).is_valid(value)
            assert saved == (url_param_error(entry, param, value) is None), (entry.key, param)
            checked += 1
    assert checked >= 2  # OneDrive's and SharePoint's tenantId


async def test_connector_without_oauth_is_refused(catalog: Catalog, t0: Any) -> None:
    custom = catalog.with_custom_providers([{"key": "plainApi", "authTypes": ["API_TOKEN"]}])
    env = make_env(custom, t0)
    with pytest.raises(ValidationError):
        await env.oauth.authorization_url(ORG, USER, "plainApi", BASE)
    with pytest.raises(UnknownConnector):
        await env.oauth.authorization_url(ORG, USER, "nope", BASE)


async def test_api_token_connector_is_not_authorized_by_oauth(env: Env) -> None:
    update = ConfigUpdate(
        base_url=BASE,
        auth={"authType": "API_TOKEN", "email": "a@example.com", "apiToken": "x"},
        sync={},
        filters={},
    )
    await env.connectors.update_configuration(ORG, USER, "confluence", update)
    with pytest.raises(DomainRuleViolation):
        await env.oauth.authorization_url(ORG, USER, "confluence", BASE)


@pytest.mark.parametrize(
    "base_url",
    [
        "https://evil.example.com",
        "https://app.example.com.evil.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://user:pw@app.example.com",
        "https://app.example.com@evil.com",
        "https://app.example.com/#frag",
        "https://app.example.com/?next=https://evil.example.com",
        "javascript:alert(1)",
        "ftp://app.example.com",
        "//app.example.com",
        "app.example.com",
        "https://app.example.com\\@evil.com",
        "https://app.example.com/\nx",
        "",
    ],
)
async def test_redirect_base_must_be_an_allowed_origin(env: Env, base_url: str) -> None:
    await env.configure()
    with pytest.raises(ValidationError) as info:
        await env.oauth.authorization_url(ORG, USER, "googleWorkspace", base_url)
    assert info.value.errors[0]["path"] == "baseUrl"
    assert env.storage.states == {}


@pytest.mark.parametrize("base_url", ["https://APP.example.com", "https://app.example.com:443/", f"{BASE}/tenant-a/"])
async def test_allowed_origin_variants(env: Env, base_url: str) -> None:
    await env.configure()
    url = await env.oauth.authorization_url(ORG, USER, "googleWorkspace", base_url)
    redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
    assert redirect == base_url.rstrip("/") + "/connectors/oauth/callback/googleWorkspace"


@pytest.mark.parametrize(
    ("base_url", "ok"),
    [
        ("http://localhost:3000", True),
        ("http://127.0.0.1:8080/app", True),
        ("http://localhost", True),
        ("https://localhost:3000", False),
        ("https://app.example.com", False),
        ("http://localhost.evil.com", False),
    ],
)
async def test_default_allow_list_is_localhost_only(catalog: Catalog, t0: Any, base_url: str, ok: bool) -> None:
    env = make_env(catalog, t0, OAuthSettings())
    await env.configure()
    if ok:
        assert await env.oauth.authorization_url(ORG, USER, "googleWorkspace", base_url)
    else:
        with pytest.raises(ValidationError):
            await env.oauth.authorization_url(ORG, USER, "googleWorkspace", base_url)


@pytest.mark.parametrize("origin", ["https://app.example.com/path", "app.example.com", "https://u@app.example.com"])
def test_allow_list_entries_must_be_origins(origin: str) -> None:
    with pytest.raises(ValidationError):
        OAuthSettings(allowed_redirect_origins=(origin,))


async def test_custom_provider_endpoints_come_from_discovery(catalog: Catalog, t0: Any) -> None:
    custom = catalog.with_custom_providers(
        [
            {
                "key": "acme",
                "displayName": "Acme",
                "apps": ["ACME"],
                "oauth": {
                    "authorizeUrl": "",
                    "tokenUrl": "",
                    "discoveryUrl": "https://idp.acme.test/.well-known/openid-configuration",
                    "defaultScopes": ["openid", "acme.read"],
                    "scopeApps": {"acme.read": "ACME"},
                },
            }
        ]
    )
    env = make_env(custom, t0)
    env.provider.discovery = {
        "issuer": "https://idp.acme.test",
        "authorization_endpoint": "https://idp.acme.test/auth",
        "token_endpoint": "https://idp.acme.test/token",
        "jwks_uri": "https://idp.acme.test/jwks",
    }
    await env.configure("acme")
    q = await env.authorize("acme")
    assert env.provider.named("discover")[0].kwargs == {"issuer": "https://idp.acme.test"}
    assert q["nonce"]
    env.provider.exchange = [env.provider.token_response(["openid", "acme.read"])]
    result = await env.oauth.handle_callback(ORG, USER, "acme", code="c", state=q["state"], base_url=BASE)
    assert result.authenticated
    exchange = env.provider.named("exchange")[0]
    assert exchange.spec.token_url == "https://idp.acme.test/token"
    assert env.provider.named("verify")[0].spec.issuer == "https://idp.acme.test"


# -- callback ------------------------------------------------------------------------------------


async def test_callback_stores_tokens_and_enables_the_granted_apps(env: Env) -> None:
    await env.configure()
    q = await env.authorize()
    env.provider.exchange = [env.provider.token_response(["openid", "email", DRIVE, GMAIL])]
    result = await env.oauth.handle_callback(
        ORG, USER, "googleWorkspace", code="the-code", state=q["state"], base_url=BASE
    )
    assert result.authenticated and result.reason is None
    assert result.redirect_url == f"{BASE}/connectors/googleWorkspace"
    (exchange,) = env.provider.named("exchange")
    assert exchange.kwargs["code"] == "the-code"
    assert exchange.kwargs["redirect_uri"] == q["redirect_uri"]
    assert pkce_challenge(exchange.kwargs["code_verifier"]) == q["code_challenge"]
    assert exchange.kwargs["client"] == ClientCredentials(CLIENT_ID, CLIENT_SECRET)
    (verify,) = env.provider.named("verify")
    assert verify.kwargs == {"id_token": "PLANTED-IDT-1", "client_id": CLIENT_ID, "nonce": q["nonce"]}

    connector = await env.connector()
    assert connector.auth_status.state == AuthState.AUTHENTICATED
    assert connector.is_enabled and connector.enabled_apps == ("DRIVE", "GMAIL")
    assert result.connector.connector.enabled_apps == ("DRIVE", "GMAIL")
    record = await env.token()
    assert record.tokens.access_token == "PLANTED-AT-1"
    assert record.tokens.refresh_token == "PLANTED-RT-1"
    assert (record.service_type, record.account_id) == ("GOOGLE_DRIVE", USER)
    assert record.status == TokenStatus.ACTIVE and record.refresh_due_at is not None

    events = await env.events()
    kinds = [e.event_type for e in events]
    assert kinds[-3:] == ["connectorAuthStatusChanged", "appEnabled", "TOKEN_CREATED"]
    app_enabled = events[-2]
    assert isinstance(app_enabled, AppEnabled)
    assert app_enabled.sync_action == SyncAction.IMMEDIATE
    assert app_enabled.apps == ("DRIVE", "GMAIL")
    assert env.storage.states == {}


async def test_callback_without_base_url_redirects_to_the_authorize_base(env: Env) -> None:
    await env.configure()
    url = await env.oauth.authorization_url(ORG, USER, "googleWorkspace", f"{BASE}/t1")
    state = parse_qs(urlsplit(url).query)["state"][0]
    result = await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=state)
    assert result.redirect_url == f"{BASE}/t1/connectors/googleWorkspace"


async def test_reauthorization_replaces_the_tokens_of_the_same_record(env: Env) -> None:
    await env.configure()
    for _ in range(2):
        q = await env.authorize()
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"], base_url=BASE)
    record = await env.token()
    assert record.tokens.refresh_token == "PLANTED-RT-2"
    assert await env.token_events() == ["TOKEN_CREATED", "TOKEN_CREATED"]
    assert env.provider.named("revoke") == []  # revoking the old grant would kill the new one


async def test_replayed_state_is_refused(env: Env) -> None:
    await env.configure()
    q = await env.authorize()
    await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])
    with pytest.raises(InvalidState):
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])
    assert len(env.provider.named("exchange")) == 1


@pytest.mark.parametrize(
    ("org", "user", "name"),
    [("org-2", USER, "googleWorkspace"), (ORG, "user-2", "googleWorkspace"), (ORG, USER, "drive")],
)
async def test_foreign_state_is_refused_and_consumed(env: Env, org: str, user: str, name: str) -> None:
    await env.configure()
    await env.configure("onedrive", tenantId="t")
    q = await env.authorize()
    target = "onedrive" if name == "drive" else name
    with pytest.raises(InvalidState):
        await env.oauth.handle_callback(org, user, target, code="c", state=q["state"])
    with pytest.raises(InvalidState):
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])
    assert env.provider.named("exchange") == []
    assert await env.token() is None


async def test_expired_state_is_refused(env: Env) -> None:
    await env.configure()
    q = await env.authorize()
    env.clock.advance(601)
    with pytest.raises(InvalidState):
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])


async def test_unknown_state_is_refused(env: Env) -> None:
    await env.configure()
    with pytest.raises(InvalidState) as info:
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state="forged")
    assert "forged" not in str(info.value)


async def test_state_and_code_are_required(env: Env) -> None:
    await env.configure()
    q = await env.authorize()
    with pytest.raises(ValidationError) as info:
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=None)
    assert info.value.errors == [{"path": "state", "message": "is required"}]
    with pytest.raises(ValidationError) as info:
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code=None, state=None, error="access_denied")
    assert info.value.errors[0]["path"] == "state"
    with pytest.raises(ValidationError) as info:
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="", state=q["state"])
    assert info.value.errors[0]["path"] == "code"
    # A refused request did not spend the state.
    result = await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])
    assert result.authenticated


async def test_bad_callback_base_url_is_refused_before_the_state_is_spent(env: Env) -> None:
    await env.configure()
    q = await env.authorize()
    with pytest.raises(ValidationError):
        await env.oauth.handle_callback(
            ORG, USER, "googleWorkspace", code="c", state=q["state"], base_url="https://evil.test"
        )
    assert (await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])).authenticated


@pytest.mark.parametrize("error", [None, "access_denied"])
async def test_the_callback_redirect_is_bound_to_the_state_not_to_the_callers_base_url(
    catalog: Catalog, t0: Any, error: str | None
) -> None:
    # seen: authorize with one allowed base, callback with another allowed one → the
    # redirectUrl went to the callback's base, though the state was bound to the first
    other = "http://127.0.0.1:9999"
    env = make_env(catalog, t0, OAuthSettings(allowed_redirect_origins=(BASE, other)))
    await env.configure()
    q = await env.authorize()
    with pytest.raises(ValidationError) as info:
        await env.oauth.handle_callback(
            ORG, USER, "googleWorkspace", code="c", state=q["state"], error=error, base_url=f"{other}/x"
        )
    assert [e["path"] for e in info.value.errors] == ["baseUrl"]
    assert env.provider.named("exchange") == [] and await env.token_events() == []
    with pytest.raises(InvalidState):  # spent: presented outside its binding
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"], base_url=BASE)
    # the same origin (another path, another spelling) is the existing clients' call: accepted,
    # and the redirect is the stored base's
    q = await env.authorize()
    result = await env.oauth.handle_callback(
        ORG, USER, "googleWorkspace", code="c", state=q["state"], error=error, base_url="https://APP.example.com/x/"
    )
    assert result.redirect_url.startswith(f"{BASE}/connectors/googleWorkspace")


@pytest.mark.parametrize(
    ("authorized", "called_back"),
    [
        (BASE, f"{BASE}:443"),
        (f"{BASE}:443/t1", f"{BASE}/t1"),
        (BASE, "https://APP.example.com:443/x/"),
        (BASE, f"{BASE}:"),
    ],
)
async def test_a_default_port_spelled_out_is_the_same_origin_at_the_callback(
    env: Env, authorized: str, called_back: str
) -> None:
    # seen: the allow-list accepted https://app.example.com:443 but the callback compared it
    # with https://app.example.com as text, answered 400 and spent the state
    await env.configure()
    url = await env.oauth.authorization_url(ORG, USER, "googleWorkspace", authorized)
    state = parse_qs(urlsplit(url).query)["state"][0]
    result = await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=state, base_url=called_back)
    assert result.authenticated
    assert result.redirect_url.startswith(authorized.rstrip("/") + "/connectors/googleWorkspace")


def test_origin_of_is_normalised_as_the_allow_list_compares() -> None:
    assert origin_of("https://APP.example.com:443/x") == "https://app.example.com"
    assert origin_of("http://localhost:80") == "http://localhost"
    assert origin_of("http://localhost:3000/") == "http://localhost:3000"
    assert origin_of("https://app.example.com:80") == "https://app.example.com:80"
    assert origin_of("http://[::1]:80/") == "http://[::1]"
    assert origin_of("http://[::1]:8080") == "http://[::1]:8080"
    assert origin_of("ftp://app.example.com") is None
    assert origin_of("https://app.example.com:0") is None  # not the default port: no port at all
    assert origin_of("https://[::1") is None  # urlsplit raises ValueError on it


@pytest.mark.parametrize("base", ["https://[::1", "http://localhost:0"])
async def test_a_base_url_the_url_parser_refuses_is_a_validation_error_not_a_crash(env: Env, base: str) -> None:
    await env.configure()
    with pytest.raises(ValidationError):
        await env.oauth.authorization_url(ORG, USER, "googleWorkspace", base)


async def test_provider_error_marks_the_connector_and_redirects_with_the_code(env: Env) -> None:
    await env.configure()
    q = await env.authorize()
    result = await env.oauth.handle_callback(
        ORG,
        USER,
        "googleWorkspace",
        state=q["state"],
        error="access_denied",
        error_description="The user said no\n",
        base_url=BASE,
    )
    assert not result.authenticated
    assert result.redirect_url == f"{BASE}/connectors/googleWorkspace?error=access_denied"
    assert result.reason == "authorization failed: access_denied (The user said no)"
    connector = await env.connector()
    assert connector.auth_status.state == AuthState.NOT_AUTHENTICATED
    assert connector.auth_status.reason == result.reason
    assert not connector.is_enabled
    assert env.provider.named("exchange") == []
    assert (await env.events())[-1].event_type == "connectorAuthStatusChanged"


async def test_error_code_is_sanitised(env: Env) -> None:
    await env.configure()
    q = await env.authorize()
    result = await env.oauth.handle_callback(
        ORG, USER, "googleWorkspace", state=q["state"], error="<script>alert(1)</script>"
    )
    assert result.redirect_url.endswith("?error=authorization_failed")


async def test_cancelled_reconsent_keeps_a_working_connector(env: Env) -> None:
    await env.configure()
    q = await env.authorize()
    await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])
    before = await env.connector()
    q = await env.authorize()
    result = await env.oauth.handle_callback(ORG, USER, "googleWorkspace", state=q["state"], error="access_denied")
    assert not result.authenticated and result.reason
    after = await env.connector()
    assert after.auth_status == before.auth_status and after.is_enabled
    assert after.version == before.version


async def test_a_refused_reconsent_after_a_client_change_serves_no_token(env: Env) -> None:
    """The client changed (re-authorization required) and the person then refuses consent: the
    connector is disabled, and the token issued to the old client is neither refreshed nor
    served (it needed a new authorization from the moment the client changed)."""
    await env.configure()
    q = await env.authorize()
    await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])
    await env.configure(clientId="client-id-2")
    assert (await env.connector()).auth_status.state == AuthState.NEEDS_REAUTHENTICATION
    assert (await env.token()).status == TokenStatus.NEEDS_REAUTHENTICATION
    q = await env.authorize()
    await env.oauth.handle_callback(ORG, USER, "googleWorkspace", state=q["state"], error="access_denied")
    assert not (await env.connector()).is_enabled
    assert (await env.token()).status == TokenStatus.NEEDS_REAUTHENTICATION


@pytest.mark.parametrize(
    "failure",
    [
        IdTokenInvalid("the ID token was issued for another client (aud)"),
        IdTokenInvalid("the ID token's signature is invalid"),
    ],
)
async def test_invalid_id_token_stores_nothing_and_revokes_what_was_issued(env: Env, failure: Exception) -> None:
    await env.configure()
    q = await env.authorize()
    env.provider.verify_error = failure
    with pytest.raises(IdTokenInvalid):
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])
    assert await env.token() is None
    assert (await env.connector()).auth_status.state == AuthState.NOT_AUTHENTICATED
    revoked = [(c.kwargs["token"], c.kwargs["hint"]) for c in env.provider.named("revoke")]
    assert revoked == [("PLANTED-RT-1", "refresh_token"), ("PLANTED-AT-1", "access_token")]
    assert await env.token_events() == []


@pytest.mark.parametrize(
    "reason",
    [
        "the ID token's signature is invalid",
        "the ID token's nonce does not match the authorization request",
        "the ID token is not signed with an accepted algorithm",  # alg none
    ],
)
@pytest.mark.parametrize("legacy", [False, True])
async def test_a_rejected_id_token_is_logged_with_connector_and_reason(
    env: Env, caplog: Any, reason: str, legacy: bool
) -> None:
    await env.configure()
    q = await env.authorize()
    env.provider.verify_error = IdTokenInvalid(reason)
    with caplog.at_level(logging.WARNING, logger="connector_core"), pytest.raises(IdTokenInvalid):
        if legacy:
            await env.oauth.token_from_code(ORG, USER, "person@example.com", "PLANTED-CODE", BASE)
        else:
            await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="PLANTED-CODE", state=q["state"])
    rejected = [r for r in caplog.records if r.levelno == logging.WARNING and "ID token rejected" in r.getMessage()]
    assert len(rejected) == 1
    message = rejected[0].getMessage()
    assert "connector=googleWorkspace" in message and f"org={ORG}" in message and reason in message
    assert "PLANTED" not in caplog.text


async def test_missing_id_token_when_openid_was_requested_is_refused(env: Env) -> None:
    await env.configure()
    q = await env.authorize()
    env.provider.exchange = [env.provider.token_response([DRIVE], id_token=False)]
    with pytest.raises(IdTokenInvalid):
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])
    assert await env.token() is None


async def test_no_granted_app_is_refused(env: Env) -> None:
    await env.configure()
    q = await env.authorize()
    env.provider.exchange = [env.provider.token_response(["openid", "email"])]
    with pytest.raises(DomainRuleViolation) as info:
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])
    assert info.value.metadata["grantedScopes"] == ["email", "openid"]
    assert await env.token() is None
    assert len(env.provider.named("revoke")) == 2


async def test_refused_code_exchange_changes_nothing(env: Env) -> None:
    await env.configure()
    q = await env.authorize()
    env.provider.exchange = [ReauthorizationRequired("refused", error_code="invalid_grant")]
    with pytest.raises(OAuthError) as err:  # the code is the caller's input: a 400, not a re-auth
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])
    assert err.value.metadata == {"providerError": "invalid_grant"}
    assert await env.token() is None
    assert env.provider.named("verify") == []


async def test_token_response_without_access_token_is_a_provider_error(env: Env) -> None:
    await env.configure()
    q = await env.authorize()
    env.provider.exchange = [{"token_type": "Bearer"}]
    with pytest.raises(ProviderError):
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])


async def test_atlassian_callback_without_id_token_is_fine(env: Env) -> None:
    await env.configure("confluence")
    q = await env.authorize("confluence")
    env.provider.exchange = [
        env.provider.token_response(["offline_access", "read:confluence-content.all"], id_token=False)
    ]
    result = await env.oauth.handle_callback(ORG, USER, "confluence", code="c", state=q["state"])
    assert result.authenticated
    assert env.provider.named("exchange")[0].kwargs["code_verifier"] is None
    assert env.provider.named("verify") == []
    assert (await env.token("confluence")).service_type == "CONFLUENCE"


def flaky_env(catalog: Catalog, t0: Any, error: Exception) -> tuple[Env, dict[str, int]]:
    """An env whose next ``fail["commits"]`` commits raise ``error``."""
    storage_box: list[MemoryStorage] = []
    fail = {"commits": 0}

    class FlakyUow:
        def __init__(self) -> None:
            self.inner = storage_box[0].unit_of_work()
            self.connectors, self.tokens, self.outbox = (
                self.inner.connectors,
                self.inner.tokens,
                self.inner.outbox,
            )

        async def __aenter__(self) -> FlakyUow:
            await self.inner.__aenter__()
            return self

        async def __aexit__(self, *exc: Any) -> None:
            await self.inner.__aexit__(*exc)

        async def commit(self) -> None:
            if fail["commits"] > 0:
                fail["commits"] -= 1
                raise error
            await self.inner.commit()

    env = make_env(catalog, t0, uow=FlakyUow)
    storage_box.append(env.storage)
    return env, fail


async def test_conflicts_retry_the_unit_of_work_not_the_code_exchange(catalog: Catalog, t0: Any) -> None:
    env, fail = flaky_env(catalog, t0, Conflict("someone else won"))
    await env.configure()
    q = await env.authorize()
    fail["commits"] = 2
    result = await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])
    assert result.authenticated
    assert len(env.provider.named("exchange")) == 1
    assert await env.token_events() == ["TOKEN_CREATED"]


async def test_store_refusal_revokes_the_issued_tokens(catalog: Catalog, t0: Any) -> None:
    # e.g. the client secret was removed while the person was on the consent page
    env, fail = flaky_env(catalog, t0, NotConfigured("missing auth.clientSecret"))
    await env.configure()
    q = await env.authorize()
    fail["commits"] = 1
    with pytest.raises(NotConfigured):
        await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="c", state=q["state"])
    assert await env.token() is None
    assert [c.kwargs["hint"] for c in env.provider.named("revoke")] == ["refresh_token", "access_token"]


async def test_every_catalog_requirement_is_checked_before_consent(env: Env) -> None:
    await env.configure("sharepointOnline", tenantId="contoso")
    with pytest.raises(NotConfigured) as info:
        await env.oauth.authorization_url(ORG, USER, "sharepointOnline", BASE)
    assert info.value.metadata["missing"] == ["auth.sharepointDomain"]
    await env.configure("sharepointOnline", tenantId="contoso", sharepointDomain="contoso.sharepoint.com")
    assert await env.oauth.authorization_url(ORG, USER, "sharepointOnline", BASE)


# -- legacy Google route -------------------------------------------------------------------------


async def test_token_from_code_checks_the_email_and_maps_granted_scopes(env: Env) -> None:
    await env.configure()
    env.provider.exchange = [
        env.provider.token_response(["openid", "email", GMAIL]),
        env.provider.token_response(["openid", "email", GMAIL, CALENDAR]),
    ]
    view, created = await env.oauth.token_from_code(ORG, USER, "person@example.COM", "tc", BASE)
    assert created
    assert view.connector.enabled_apps == ("GMAIL",)
    exchange = env.provider.named("exchange")[0]
    assert exchange.kwargs["code_verifier"] is None
    assert exchange.kwargs["redirect_uri"] == f"{BASE}/connectors/oauth/callback/googleWorkspace"
    assert env.provider.named("verify")[0].kwargs["nonce"] is None
    view, created = await env.oauth.token_from_code(ORG, USER, "person@example.com", "tc2", BASE)
    assert not created
    assert view.connector.enabled_apps == ("GMAIL", "CALENDAR")


async def test_token_from_code_uses_the_configured_legacy_redirect(catalog: Catalog, t0: Any) -> None:
    env = make_env(catalog, t0, OAuthSettings(allowed_redirect_origins=(BASE,), legacy_redirect_uri="postmessage"))
    await env.configure()
    await env.oauth.token_from_code(ORG, USER, "person@example.com", "tc")
    assert env.provider.named("exchange")[0].kwargs["redirect_uri"] == "postmessage"


async def test_token_from_code_needs_a_redirect(env: Env) -> None:
    await env.configure()
    with pytest.raises(ValidationError) as info:
        await env.oauth.token_from_code(ORG, USER, "person@example.com", "tc")
    assert info.value.errors[0]["path"] == "baseUrl"
    with pytest.raises(ValidationError):
        await env.oauth.token_from_code(ORG, USER, "person@example.com", "", BASE)
    assert env.provider.named("exchange") == []


@pytest.mark.parametrize(
    "claims",
    [
        {"email": "someone.else@example.com"},
        {},
        {"email": "person@example.com", "email_verified": False},
    ],
)
async def test_token_from_code_refuses_another_account(env: Env, claims: dict[str, Any]) -> None:
    await env.configure()
    env.provider.claims = claims
    with pytest.raises(PermissionDenied) as info:
        await env.oauth.token_from_code(ORG, USER, "person@example.com", "tc", BASE)
    assert info.value.message == "Account email is different from the consent-giving mail."
    assert await env.token() is None
    assert len(env.provider.named("revoke")) == 2


async def test_token_from_code_needs_an_id_token(env: Env) -> None:
    await env.configure()
    env.provider.exchange = [env.provider.token_response([DRIVE], id_token=False)]
    with pytest.raises(IdTokenInvalid):
        await env.oauth.token_from_code(ORG, USER, "person@example.com", "tc", BASE)
    assert await env.token() is None


# -- revocation ----------------------------------------------------------------------------------


async def authorized(env: Env, name: str = "googleWorkspace", scopes: Sequence[str] = (DRIVE,), **auth: Any) -> None:
    await env.configure(name, **auth)
    q = await env.authorize(name)
    env.provider.exchange = [env.provider.token_response(["openid", *scopes])]
    await env.oauth.handle_callback(ORG, USER, name, code="c", state=q["state"])


async def test_revoke_revokes_at_the_provider_and_disconnects(env: Env) -> None:
    await authorized(env)
    view = await env.oauth.revoke(ORG, USER, "googleWorkspace")
    revoked = [(c.kwargs["token"], c.kwargs["hint"]) for c in env.provider.named("revoke")]
    assert revoked == [("PLANTED-RT-1", "refresh_token"), ("PLANTED-AT-1", "access_token")]
    assert await env.token() is None
    c = view.connector
    assert c.auth_status.state == AuthState.NOT_AUTHENTICATED
    assert c.auth_status.reason == f"revoked by {USER}"
    assert not c.is_enabled
    kinds = [e.event_type for e in await env.events()]
    assert kinds[-3:] == ["connectorAuthStatusChanged", "appDisabled", "TOKEN_REVOKED"]
    assert (await env.connector()).version == c.version


async def test_revoke_continues_when_the_provider_fails(env: Env, caplog: Any) -> None:
    await authorized(env)
    env.provider.revoke_error = ProviderError("provider error: HTTP 500", status=500)
    with caplog.at_level(logging.DEBUG):
        await env.oauth.revoke(ORG, USER, "googleWorkspace")
    assert await env.token() is None
    assert "provider revocation failed" in caplog.text
    assert "PLANTED" not in caplog.text


async def test_revoke_without_revocation_endpoint_only_deletes_locally(env: Env) -> None:
    await authorized(env, "onedrive", scopes=["Files.Read.All"], tenantId="contoso")
    await env.oauth.revoke(ORG, USER, "onedrive")
    assert env.provider.named("revoke") == []
    assert await env.token("onedrive") is None
    assert (await env.token_events())[-1] == "TOKEN_REVOKED"


async def test_revoke_of_a_connector_without_tokens_is_no_tokens_and_changes_nothing(env: Env) -> None:
    with pytest.raises(NoTokens):
        await env.oauth.revoke(ORG, USER, "googleWorkspace")
    await env.configure()
    before = await env.events()
    with pytest.raises(NoTokens):
        await env.oauth.revoke(ORG, USER, "googleWorkspace")
    assert await env.events() == before


async def test_client_credentials_never_show_the_secret(env: Env) -> None:
    await env.configure()
    creds = await env.oauth.client_credentials(ORG, "google")
    assert creds == ClientCredentials(CLIENT_ID, CLIENT_SECRET)
    assert CLIENT_SECRET not in repr(creds)
    resolved = await env.oauth.resolve_provider(ORG, "googleWorkspace")
    assert CLIENT_SECRET not in repr(resolved)


async def test_no_secret_reaches_logs_reprs_or_errors(env: Env, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    await env.configure()
    q = await env.authorize()
    result = await env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="PLANTED-CODE", state=q["state"])
    errors: list[Exception] = []
    for attempt in (
        lambda: env.oauth.handle_callback(ORG, USER, "googleWorkspace", code="PLANTED-CODE", state=q["state"]),
        lambda: env.oauth.token_from_code(ORG, USER, "x@example.com", "PLANTED-CODE", BASE),
    ):
        try:
            await attempt()
        except Exception as exc:
            errors.append(exc)
    assert len(errors) == 2
    await env.oauth.revoke(ORG, USER, "googleWorkspace")
    record_repr = repr(await env.oauth.states.take(state_hash(q["state"])))
    texts = [caplog.text, repr(result), record_repr, *(repr(e) + str(e) for e in errors)]
    secrets = [CLIENT_SECRET, "PLANTED", q["state"], q["nonce"]]
    for text in texts:
        for secret in secrets:
            assert secret not in text


async def test_revoke_waits_for_a_running_refresh_and_revokes_what_it_rotated(env: Env) -> None:
    """The refresher holds the token's lease and rotates the refresh token meanwhile: revocation
    waits for the lease and revokes the rotated tokens, so nothing stays live at the provider."""
    await authorized(env)
    lock = env.lock
    record = await env.token()
    assert record is not None
    held = await lock.acquire(f"token-refresh:{record.id}", 60)
    assert held is not None

    async def refresher_finishes(waits: int) -> None:
        if waits == 2:  # the refresh in flight stores a rotated token and lets go
            async with env.ctx.uow() as uow:
                current = await uow.tokens.get(record.id)
                assert current is not None
                tokens = current.tokens.refreshed(
                    {"access_token": "PLANTED-AT-2", "refresh_token": "PLANTED-RT-2", "expires_in": 3600},
                    now=env.clock.now(),
                )
                current.apply_refresh(tokens, lifecycle=env.ctx.lifecycle, now=env.clock.now(), ids=env.ctx.ids)
                await uow.tokens.save(current)
                await uow.commit()
            assert held is not None
            await lock.release(held)

    env.sleeper.hook = refresher_finishes
    await env.oauth.revoke(ORG, USER, "googleWorkspace")
    revoked = [c.kwargs["token"] for c in env.provider.named("revoke")]
    assert revoked == ["PLANTED-RT-2", "PLANTED-AT-2"]
    assert await env.token() is None
    assert await lock.acquire(f"token-refresh:{record.id}", 60) is not None  # released again


async def test_revoke_gives_up_when_a_refresh_keeps_the_lease(env: Env) -> None:
    await authorized(env)
    record = await env.token()
    assert record is not None
    assert await env.lock.acquire(f"token-refresh:{record.id}", 600) is not None
    with pytest.raises(Conflict):
        await env.oauth.revoke(ORG, USER, "googleWorkspace")
    assert env.provider.named("revoke") == []
    assert await env.token() is not None


async def test_revocation_renews_the_lease_between_provider_calls(env: Env) -> None:
    await authorized(env)
    record = await env.token()
    held_meanwhile: list[bool] = []

    async def slow_provider() -> None:
        env.clock.advance(40)  # two slow calls outlast a lease that is not renewed
        held_meanwhile.append(await env.lock.acquire(f"token-refresh:{record.id}", 1) is None)

    env.provider.on_revoke = slow_provider
    await env.oauth.revoke(ORG, USER, "googleWorkspace")
    assert held_meanwhile == [True, True]
    assert await env.token() is None


async def test_revocation_stops_when_a_refresh_takes_the_lease_over(env: Env) -> None:
    await authorized(env)
    record = await env.token()

    async def lease_lapses_and_is_taken() -> None:
        env.clock.advance(3600)
        assert await env.lock.acquire(f"token-refresh:{record.id}", 600) is not None

    env.provider.on_revoke = lease_lapses_and_is_taken
    with pytest.raises(Conflict):
        await env.oauth.revoke(ORG, USER, "googleWorkspace")
    assert [c.kwargs["hint"] for c in env.provider.named("revoke")] == ["refresh_token"]
    assert await env.token() is not None  # the person's retry finishes the revocation
