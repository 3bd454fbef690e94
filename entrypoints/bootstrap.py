"""The composition root: wires the ports of the services to the adapters the settings chose.

Tests and embedding applications call :func:`build_container` with their own adapters;
nothing connects at import time. Opening the backends is :mod:`entrypoints.infrastructure`'s
job, the keys :mod:`entrypoints.service_secrets`', the run-time overrides
:mod:`entrypoints.overrides`'.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Protocol

from attrs import define, field

from adapters.crypto import Aead, EncryptedKeyValueStore
from adapters.factories.memory import memory_kv_store
from adapters.factories.storage_ports import StoragePorts
from adapters.health import NamedCheck
from adapters.http.oauth_client import HttpxOAuthClient
from adapters.iam.claims import ClaimAdminIam
from adapters.invalidating_uow import invalidating
from adapters.read_cache import ReadThroughCache
from adapters.system import SecureIds, SystemClock, SystemRandom
from connector_core.catalog import Catalog, load_default_catalog
from connector_core.model.connector import EventRoutes
from connector_core.ports.backend_client import BackendConnectorClient
from connector_core.ports.clock import Clock
from connector_core.ports.health import HealthCheck
from connector_core.ports.iam import IdentityAccess
from connector_core.ports.kv_store import KeyValueStore
from connector_core.ports.unit_of_work import UnitOfWorkFactory
from connector_core.services.connectors import ConnectorService
from connector_core.services.context import ServiceContext
from connector_core.services.oauth import OAuthService
from connector_core.services.redirects import OAuthSettings, origin_of
from connector_core.services.refresh import TokenRefresher
from connector_core.services.relay import OutboxRelay
from connector_core.services.token_lease import lease_ttl_for
from connector_core.tokens import RefreshPolicy
from entrypoints import compat
from entrypoints.infrastructure import Infrastructure, connection_key, open_infrastructure
from entrypoints.overrides import with_stored_overrides
from entrypoints.service_secrets import ServiceSecrets, load_keyring, load_service_secrets
from entrypoints.settings import Settings


class Generations(Protocol):
    """Whoever serves the current container generation (the HTTP app's holder): builds and swaps
    in the next one."""

    async def reload(self) -> tuple[int, list[str]]:
        """Build the next generation and make it current; its number and the catalog's keys."""
        ...

    def live_settings(self) -> Settings:
        """The settings of the generation that is current now."""
        ...


@define
class Container:
    """One generation of the wired application: every service and the adapters under them."""

    settings: Settings
    catalog: Catalog
    ctx: ServiceContext
    storage: StoragePorts
    secrets_store: KeyValueStore
    service_secrets: ServiceSecrets
    iam: IdentityAccess
    health_checks: list[HealthCheck]
    connectors: ConnectorService
    oauth: OAuthService
    refresher: TokenRefresher
    infrastructure: Infrastructure
    #: publishes the outbox to the broker; None when events stay in the outbox
    relay: OutboxRelay | None = None
    read_cache: ReadThroughCache | None = None
    #: an external connector service that owns connectors; None when this service does
    backend: BackendConnectorClient | None = None
    #: closed with this generation (the connections of ``infrastructure`` may outlive it)
    closers: list[Callable[[], Awaitable[None]]] = field(factory=list)
    #: set by the HTTP app that serves this generation
    holder: Generations | None = None
    generation: int = 1

    async def aclose(self, *, infrastructure: bool = True) -> None:
        for closer in reversed(self.closers):
            await closer()
        if infrastructure:
            await self.infrastructure.aclose()


def event_routes(settings: Settings) -> Callable[[str], EventRoutes]:
    origin = settings.base_url.rstrip("/")
    base = origin + "/api/v1/connectors"

    def routes(key: str) -> EventRoutes:
        credentials = f"{base}/internal/credentials/{key}"
        if compat.enabled(settings) and key == compat.GOOGLE_CONNECTOR:
            credentials = origin + compat.GOOGLE_CREDENTIALS_PATH  # where its consumers look
        return EventRoutes(
            credentials_route=credentials,
            refresh_token_route=f"{base}/internal/refreshIndividualConnectorToken",
        )

    return routes


def service_origins(settings: Settings) -> tuple[str, ...]:
    """The service's own origin (``public_url``, else ``http://host:port``): always an allowed
    OAuth redirect target, so the web console can complete an authorization by itself."""
    own = origin_of(settings.base_url)
    return (own,) if own else ()


def _given(storage: StoragePorts, secrets: KeyValueStore | None, settings: Settings, aead: Aead) -> Infrastructure:
    """Infrastructure around adapters the caller passed (nothing to open, nothing to close)."""
    return Infrastructure(
        storage=storage,
        secrets=secrets if secrets is not None else memory_kv_store(),
        lock=storage.lock,
        aead=aead,
        checks=[NamedCheck("storage", True, storage.check)],
        key=connection_key(settings),
    )


async def build_container(
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    catalog: Catalog | None = None,
    storage: StoragePorts | None = None,
    secrets: KeyValueStore | None = None,
    iam: IdentityAccess | None = None,
    infrastructure: Infrastructure | None = None,
) -> Container:
    """Build every adapter and service the settings ask for. Pass adapters to use instead
    (``storage``, ``secrets``: the secret store before encryption, in memory when not given),
    or the ``infrastructure`` of a previous generation to share its connections."""
    env = dict(os.environ if env is None else env)
    clock = clock or SystemClock()
    if infrastructure is None:
        aead = Aead(load_keyring(settings, env))
        if storage is not None:
            infrastructure = _given(storage, secrets, settings, aead)
        else:
            opened = await open_infrastructure(settings, aead, clock)
            try:
                return await _wire(settings, env, clock, catalog, iam, opened)
            except BaseException:
                await opened.aclose()  # nothing may stay connected when start-up fails
                raise
    return await _wire(settings, env, clock, catalog, iam, infrastructure)


async def service_context(
    settings: Settings, clock: Clock, catalog: Catalog | None, infra: Infrastructure
) -> tuple[Settings, ServiceContext]:
    """What every service needs (``ctx.secrets`` is the encrypting secret store), and the
    settings with the stored run-time overrides applied."""
    secrets_store = EncryptedKeyValueStore(infra.secrets, infra.aead)
    settings = await with_stored_overrides(settings, secrets_store)
    catalog = (catalog or load_default_catalog()).with_custom_providers(settings.custom_providers)
    if compat.enabled(settings):
        catalog = catalog.with_aliases(compat.KEY_ALIASES)
    uow: UnitOfWorkFactory = infra.storage.uow
    if infra.cache is not None:
        uow = invalidating(uow, infra.cache)
    ctx = ServiceContext(
        catalog=catalog,
        uow=uow,
        secrets=secrets_store,
        clock=clock,
        ids=SecureIds(),
        random=SystemRandom(),
        policy=RefreshPolicy(margin=timedelta(seconds=settings.refresh_margin_seconds)),
        routes=event_routes(settings),
        reauthentication_disables=compat.enabled(settings),
    )
    return settings, ctx


async def _wire(
    settings: Settings,
    env: Mapping[str, str],
    clock: Clock,
    catalog: Catalog | None,
    iam: IdentityAccess | None,
    infra: Infrastructure,
) -> Container:
    settings, ctx = await service_context(settings, clock, catalog, infra)
    secrets_store = ctx.secrets
    service_secrets = await load_service_secrets(secrets_store, env)
    provider = HttpxOAuthClient(timeout=settings.oauth_http_timeout_seconds)
    oauth = OAuthService(
        ctx,
        provider,
        infra.storage.states,
        OAuthSettings(
            redirect_path=settings.oauth_redirect_path,
            allowed_redirect_origins=settings.oauth_allowed_origins,
            service_origins=service_origins(settings),
            state_ttl=timedelta(seconds=settings.oauth_state_ttl_seconds),
            post_auth_path=settings.oauth_post_auth_path,
            legacy_redirect_uri=compat.legacy_redirect_uri(settings),
        ),
        lock=infra.lock,
        lease_ttl=lease_ttl_for(settings.oauth_http_timeout_seconds),
    )
    relay = None
    if infra.publisher is not None:
        # the relay's lease lives with the outbox: a lock service outage must not hold up events
        relay = OutboxRelay(infra.storage.outbox, infra.publisher, infra.storage.lock, clock)
    return Container(
        settings=settings,
        catalog=ctx.catalog,
        ctx=ctx,
        storage=infra.storage,
        secrets_store=secrets_store,
        service_secrets=service_secrets,
        iam=iam or infra.iam or ClaimAdminIam(),
        health_checks=list(infra.checks),
        connectors=ConnectorService(ctx),
        oauth=oauth,
        refresher=TokenRefresher(
            ctx,
            provider,
            infra.lock,
            oauth=oauth,
            states=infra.storage.states,
            lease_ttl=lease_ttl_for(settings.oauth_http_timeout_seconds),
            # one store call for a lease and its token, when the leases live with the tokens
            leased_reads=infra.storage.leased_reads if infra.lock is infra.storage.lock else None,
        ),
        infrastructure=infra,
        relay=relay,
        read_cache=infra.cache,
        backend=infra.backend,
        closers=[provider.aclose],
    )
