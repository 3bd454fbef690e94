"""The composition root: builds adapters from settings and hands out the services.

Tests and embedding applications call :func:`build_container` with their own adapters;
nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets as pysecrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from attrs import define, field

from adapters.crypto import Aead, EncryptedKeyValueStore, Keyring
from adapters.http.oauth_client import HttpxOAuthClient
from adapters.memory import (
    MemoryCache,
    MemoryKeyValueStore,
    MemoryLeaseLock,
    MemoryOAuthStateStore,
    MemoryOutboxReader,
    MemoryStorage,
)
from adapters.read_cache import ReadThroughCache, invalidating
from adapters.sqlite import (
    SQLiteDatabase,
    SQLiteKeyValueStore,
    SQLiteLeaseLock,
    SQLiteOAuthStateStore,
    SQLiteOutboxReader,
    SQLiteUnitOfWork,
)
from adapters.system import SecureIds, SystemClock, SystemRandom
from connector_core.catalog import Catalog, load_default_catalog
from connector_core.errors import Conflict, ConnectorManagerError, CryptoError
from connector_core.model.connector import EventRoutes
from connector_core.ports.backend_client import BackendConnectorClient
from connector_core.ports.clock import Clock
from connector_core.ports.event_publisher import EventPublisher
from connector_core.ports.health import HealthCheck
from connector_core.ports.iam import IdentityAccess, Principal
from connector_core.ports.kv_store import KeyValueStore
from connector_core.ports.lock import LeaseLock
from connector_core.ports.oauth_state import OAuthStateStore
from connector_core.ports.outbox import OutboxReader
from connector_core.ports.unit_of_work import UnitOfWorkFactory
from connector_core.services.connectors import ConnectorService
from connector_core.services.context import ServiceContext
from connector_core.services.oauth import OAuthService
from connector_core.services.redirects import OAuthSettings
from connector_core.services.refresh import TokenRefresher
from connector_core.services.relay import OutboxRelay
from connector_core.tokens import RefreshPolicy
from entrypoints.settings import Settings, SettingsError

log = logging.getLogger("connector_manager")

SECRET_KEYS_PATH = "/services/secretKeys"
KEYRING_FILE = "master.key"


class ServiceSecrets:
    """Signing secrets of the API. Never printed (a plain class, so no pretty-printer that
    walks attrs fields can show them either)."""

    __slots__ = ("cookie_secret", "jwt_secret", "scoped_jwt_secret")

    def __init__(self, jwt_secret: str, scoped_jwt_secret: str, cookie_secret: str) -> None:
        self.jwt_secret = jwt_secret
        self.scoped_jwt_secret = scoped_jwt_secret
        self.cookie_secret = cookie_secret

    def __repr__(self) -> str:
        return "ServiceSecrets(<hidden>)"


class ClaimAdminIam:
    """Default IAM adapter: admin when the user token says so (``isAdmin: true`` or a role)."""

    async def is_admin(self, principal: Principal) -> bool:
        claims = principal.claims
        if claims.get("isAdmin") is True:
            return True
        role = claims.get("role")
        roles = claims.get("roles")
        return role == "admin" or (isinstance(roles, list) and "admin" in roles)


@define
class NamedCheck:
    name: str
    required: bool
    probe: Callable[[], Awaitable[bool]]

    async def check(self) -> bool:
        try:
            return bool(await self.probe())
        except Exception:  # a health probe reports; it never raises
            return False


@define
class Storage:
    """What one storage backend provides."""

    uow: UnitOfWorkFactory
    outbox: OutboxReader
    states: OAuthStateStore
    raw_kv: KeyValueStore
    lock: LeaseLock
    check: Callable[[], Awaitable[bool]]
    close: Callable[[], Awaitable[None]]


class Generations(Protocol):
    """Whoever serves the current container generation (the HTTP app's holder): builds and swaps
    in the next one."""

    async def reload(self) -> tuple[int, list[str]]:
        """Build the next generation and make it current; its number and the catalog's keys."""
        ...


@define
class Container:
    """One generation of the wired application: every service and the adapters under them."""

    settings: Settings
    catalog: Catalog
    ctx: ServiceContext
    storage: Storage
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


def _keyring(settings: Settings, env: dict[str, str]) -> Keyring:
    legacy = env.get("CM_LEGACY_SECRET_KEY") or None
    if env.get("CM_ENCRYPTION_KEYS"):
        return Keyring.parse(env["CM_ENCRYPTION_KEYS"], legacy_secret=legacy)
    if env.get("CM_MASTER_KEY"):
        return Keyring.from_master_secret(env["CM_MASTER_KEY"], legacy_secret=legacy)
    if settings.storage == "memory" and settings.secrets == "memory":
        return Keyring.generate(legacy_secret=legacy)
    path = settings.data_dir / KEYRING_FILE
    return Keyring.parse(
        _read_or_create_secret_file(path, lambda: Keyring.generate().to_spec()),
        legacy_secret=legacy,
    )


def _read_or_create_secret_file(path: Path, make: Callable[[], str]) -> str:
    """Read a 0600 file, creating it atomically (O_EXCL) on first start."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SettingsError.for_field("data_dir", f"{path} must not be readable by others (chmod 600)") from None
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(make() + "\n")
    return path.read_text(encoding="utf-8").strip()


async def _true() -> bool:
    return True


async def _nothing() -> None:
    return None


def _redact(url: str) -> str:
    """A URL fit for an error line: user info hidden, query dropped (works for multi-host URLs)."""
    hidden = re.sub(r"//[^@/]*@", "//***@", url, count=1)
    return hidden.split("?", 1)[0]


async def _require(check: Callable[[], Awaitable[bool]], setting: str, what: str) -> None:
    """Fail start-up with one line naming the setting when a dependency does not answer."""
    try:
        ok = await asyncio.wait_for(check(), timeout=15)
    except Exception as exc:  # any failure to answer is the same answer
        message = exc.message if isinstance(exc, ConnectorManagerError) else type(exc).__name__
        raise SettingsError.for_field(setting, f"cannot reach {what}: {message}") from None
    if not ok:
        raise SettingsError.for_field(setting, f"cannot reach {what}")


@define
class Infrastructure:
    """Connections and the adapters on them; shared by container generations until a reload
    changes a connection setting."""

    storage: Storage
    lock: LeaseLock
    cache: ReadThroughCache | None = None
    publisher: EventPublisher | None = None
    backend: BackendConnectorClient | None = None
    checks: list[HealthCheck] = field(factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(factory=list)
    etcd_client: Any = None
    key: tuple[Any, ...] = ()
    aead: Aead | None = None

    async def aclose(self) -> None:
        for closer in reversed(self.closers):
            try:
                await closer()
            except Exception:  # closing is best effort
                log.warning("closing an adapter failed", exc_info=True)


INFRA_SETTINGS = (
    "storage",
    "secrets",
    "events",
    "cache",
    "locks",
    "data_dir",
    "mongo_url",
    "mongo_database",
    "mongo_timeout_seconds",
    "etcd_endpoint",
    "etcd_user",
    "etcd_password",
    "etcd_timeout_seconds",
    "etcd_namespace",
    "kafka_bootstrap",
    "kafka_client_config",
    "redis_url",
    "cache_ttl_seconds",
    "backend_url",
    "backend_timeout_seconds",
)


def infra_key(settings: Settings) -> tuple[Any, ...]:
    return tuple(
        tuple(sorted(v.items())) if isinstance(v := getattr(settings, n), Mapping) else v for n in INFRA_SETTINGS
    )


async def open_infrastructure(settings: Settings, aead: Aead, clock: Clock) -> Infrastructure:
    """Open every adapter the settings choose and check each dependency answers."""
    closers: list[Callable[[], Awaitable[None]]] = []
    checks: list[HealthCheck] = []
    sqlite_db: SQLiteDatabase | None = None

    def sqlite() -> SQLiteDatabase:
        nonlocal sqlite_db
        if sqlite_db is None:
            settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            sqlite_db = SQLiteDatabase(settings.database_path, sealer=aead)
            closers.append(sqlite_db.aclose)
        return sqlite_db

    try:
        # -- storage: connectors, tokens, outbox, OAuth state --------------------------------
        if settings.storage == "memory":
            mem = MemoryStorage()
            storage = Storage(
                uow=mem.unit_of_work,
                outbox=MemoryOutboxReader(mem),
                states=MemoryOAuthStateStore(mem),
                raw_kv=MemoryKeyValueStore(),
                lock=MemoryLeaseLock(clock),
                check=_true,
                close=_nothing,
            )
        elif settings.storage == "sqlite":
            db = sqlite()
            storage = Storage(
                uow=lambda: SQLiteUnitOfWork(db),
                outbox=SQLiteOutboxReader(db),
                states=SQLiteOAuthStateStore(db),
                raw_kv=SQLiteKeyValueStore(db),
                lock=SQLiteLeaseLock(db, clock),
                check=db.check,
                close=_nothing,
            )
        else:
            from adapters.mongo import (
                MongoDatabase,
                MongoLeaseLock,
                MongoOAuthStateStore,
                MongoOutboxReader,
                MongoUnitOfWork,
                make_client,
            )

            client = make_client(settings.mongo_url, timeout_seconds=settings.mongo_timeout_seconds)
            mdb = MongoDatabase(
                client,
                settings.mongo_database,
                sealer=aead,
                clock=clock,
                timeout_seconds=settings.mongo_timeout_seconds,
            )
            closers.append(mdb.aclose)
            await _require(mdb.check, "mongo_url", f"MongoDB at {_redact(settings.mongo_url)}")
            try:
                await mdb.ensure_indexes()
            except ConnectorManagerError as exc:
                raise SettingsError.for_field("mongo_url", exc.message) from None
            storage = Storage(
                uow=lambda: MongoUnitOfWork(mdb),
                outbox=MongoOutboxReader(mdb),
                states=MongoOAuthStateStore(mdb),
                raw_kv=MemoryKeyValueStore(),
                lock=MongoLeaseLock(mdb, clock),
                check=mdb.check,
                close=_nothing,
            )
        checks.append(NamedCheck("storage", True, storage.check))

        # -- secrets: the key-value store (always wrapped in encryption by the caller) ---------
        etcd_client: Any = None
        if settings.secrets == "sqlite":
            storage.raw_kv = SQLiteKeyValueStore(sqlite())
            if settings.storage != "sqlite":
                checks.append(NamedCheck("secrets", True, sqlite().check))
        elif settings.secrets == "memory":
            storage.raw_kv = MemoryKeyValueStore()
        else:
            from adapters.etcd import connect_etcd

            host, _, port = settings.etcd_endpoint.rpartition(":")
            etcd = connect_etcd(
                host,
                int(port),
                user=settings.etcd_user,
                password=settings.etcd_password,
                timeout=settings.etcd_timeout_seconds,
                namespace=settings.etcd_namespace,
            )
            closers.append(etcd.aclose)
            await _require(etcd.check, "etcd_endpoint", f"etcd at {settings.etcd_endpoint}")
            storage.raw_kv = etcd
            etcd_client = etcd.client
            checks.append(NamedCheck("etcd", True, etcd.check))

        # -- locks -------------------------------------------------------------------------------
        lock: LeaseLock = storage.lock
        redis_client: Any = None
        if settings.cache == "redis" or settings.locks == "redis":
            from adapters.redis import connect_redis

            redis_client = connect_redis(settings.redis_url)
            closers.append(redis_client.aclose)

            async def redis_ping() -> bool:
                try:
                    return bool(await asyncio.wait_for(redis_client.ping(), timeout=2))
                except Exception:
                    return False

            await _require(redis_ping, "redis_url", f"Redis at {_redact(settings.redis_url)}")
            checks.append(NamedCheck("redis", True, redis_ping))
        if settings.locks == "redis":
            from adapters.redis import RedisLeaseLock

            lock = RedisLeaseLock(redis_client, clock)
        elif settings.locks == "etcd":
            if etcd_client is None:
                raise SettingsError.for_field("locks", 'etcd locks need secrets = "etcd"')
            from adapters.etcd import EtcdLeaseLock

            lock = EtcdLeaseLock(etcd_client, clock, prefix=settings.etcd_namespace + "/services/locks/")

        # -- cache -------------------------------------------------------------------------------
        cache: ReadThroughCache | None = None
        if settings.cache == "memory":
            cache = ReadThroughCache(MemoryCache(), ttl_seconds=settings.cache_ttl_seconds)
        elif settings.cache == "redis":
            from adapters.redis import RedisCache

            cache = ReadThroughCache(RedisCache(redis_client), ttl_seconds=settings.cache_ttl_seconds)

        # -- events ------------------------------------------------------------------------------
        publisher: EventPublisher | None = None
        if settings.events == "kafka":
            from adapters.kafka import KafkaEventPublisher

            kafka = KafkaEventPublisher(settings.kafka_bootstrap, client_config=settings.kafka_client_config)
            closers.append(kafka.aclose)
            await _require(kafka.check, "kafka_bootstrap", f"Kafka at {settings.kafka_bootstrap}")
            await kafka.ensure_topics()
            publisher = kafka
            checks.append(NamedCheck("kafka", True, kafka.check))

        # -- backend connector service -------------------------------------------------------------
        backend: BackendConnectorClient | None = None
        if settings.backend_url:
            from adapters.http.backend_client import HttpxBackendClient

            try:
                http_backend = HttpxBackendClient(settings.backend_url, timeout=settings.backend_timeout_seconds)
            except ValueError as exc:
                raise SettingsError.for_field("backend_url", str(exc)) from None
            closers.append(http_backend.aclose)
            backend = http_backend
            checks.append(NamedCheck("connectorBackend", True, http_backend.check))
    except BaseException:
        for closer in reversed(closers):
            with contextlib.suppress(Exception):
                await closer()
        raise

    return Infrastructure(
        storage=storage,
        lock=lock,
        cache=cache,
        publisher=publisher,
        backend=backend,
        checks=checks,
        closers=closers,
        etcd_client=etcd_client,
        key=infra_key(settings),
        aead=aead,
    )


async def load_service_secrets(store: KeyValueStore, env: dict[str, str]) -> ServiceSecrets:
    """From the environment, else from ``/services/secretKeys`` (encrypted), generated once.
    Two processes starting together agree: the first compare-and-swap wins."""
    for _ in range(3):
        try:
            found = await store.get(SECRET_KEYS_PATH)
        except CryptoError:
            raise SettingsError.for_field(
                "CM_MASTER_KEY",
                f"cannot decrypt {SECRET_KEYS_PATH}: this process has another keyring than the one that wrote it",
            ) from None
        if found is not None:
            data = json.loads(found.value)
            break
        data = {
            "jwtSecret": pysecrets.token_urlsafe(48),
            "scopedJwtSecret": pysecrets.token_urlsafe(48),
            "cookieSecret": pysecrets.token_urlsafe(48),
        }
        try:
            await store.put(SECRET_KEYS_PATH, json.dumps(data), expected_revision=0)
            break
        except Conflict:
            continue
    secrets = ServiceSecrets(
        jwt_secret=env.get("CM_JWT_SECRET") or data["jwtSecret"],
        scoped_jwt_secret=env.get("CM_SCOPED_JWT_SECRET") or data["scopedJwtSecret"],
        cookie_secret=data.get("cookieSecret", ""),
    )
    if secrets.jwt_secret == secrets.scoped_jwt_secret:
        # one secret for both would let a user token pass as a service token and back
        raise SettingsError.for_field("CM_SCOPED_JWT_SECRET", "must differ from the user token secret")
    return secrets


def event_routes(settings: Settings) -> Callable[[str], EventRoutes]:
    base = settings.base_url.rstrip("/") + "/api/v1/connectors"

    def routes(key: str) -> EventRoutes:
        return EventRoutes(
            credentials_route=f"{base}/internal/credentials/{key}",
            refresh_token_route=f"{base}/internal/refreshIndividualConnectorToken",
        )

    return routes


async def build_container(
    settings: Settings,
    *,
    env: dict[str, str] | None = None,
    clock: Clock | None = None,
    catalog: Catalog | None = None,
    storage: Storage | None = None,
    iam: IdentityAccess | None = None,
    infrastructure: Infrastructure | None = None,
) -> Container:
    """Build every adapter and service the settings ask for. Pass adapters to override
    (``storage``), or the ``infrastructure`` of a previous generation to share its connections."""
    env = dict(os.environ if env is None else env)
    clock = clock or SystemClock()
    aead = infrastructure.aead if infrastructure is not None and infrastructure.aead is not None else None
    aead = aead or Aead(_keyring(settings, env))
    if infrastructure is None:
        if storage is not None:
            infrastructure = Infrastructure(
                storage=storage,
                lock=storage.lock,
                checks=[NamedCheck("storage", True, storage.check)],
                closers=[storage.close],
                key=infra_key(settings),
                aead=aead,
            )
        else:
            opened = await open_infrastructure(settings, aead, clock)
            try:
                return await build_container(
                    settings, env=env, clock=clock, catalog=catalog, iam=iam, infrastructure=opened
                )
            except BaseException:
                await opened.aclose()  # nothing may stay connected when start-up fails
                raise
    infra = infrastructure
    storage = infra.storage
    secrets_store = EncryptedKeyValueStore(storage.raw_kv, aead)
    settings = await _with_stored_overrides(settings, secrets_store)
    catalog = (catalog or load_default_catalog()).with_custom_providers(settings.custom_providers)
    uow: UnitOfWorkFactory = storage.uow
    if infra.cache is not None:
        uow = invalidating(storage.uow, infra.cache)
    ctx = ServiceContext(
        catalog=catalog,
        uow=uow,
        secrets=secrets_store,
        clock=clock,
        ids=SecureIds(),
        random=SystemRandom(),
        policy=_policy(settings),
        routes=event_routes(settings),
    )
    service_secrets = await load_service_secrets(secrets_store, env)
    provider = HttpxOAuthClient(timeout=settings.oauth_http_timeout_seconds)
    oauth = OAuthService(
        ctx,
        provider,
        storage.states,
        OAuthSettings(
            redirect_path=settings.oauth_redirect_path,
            allowed_redirect_origins=settings.oauth_allowed_origins,
            state_ttl=timedelta(seconds=settings.oauth_state_ttl_seconds),
            post_auth_path=settings.oauth_post_auth_path,
            legacy_redirect_uri=settings.oauth_legacy_redirect_uri,
        ),
        lock=infra.lock,
    )
    refresher = TokenRefresher(ctx, provider, infra.lock, oauth=oauth, states=storage.states)
    relay = None
    if infra.publisher is not None:
        relay = OutboxRelay(storage.outbox, infra.publisher, infra.lock, clock)
    return Container(
        settings=settings,
        catalog=catalog,
        ctx=ctx,
        storage=storage,
        secrets_store=secrets_store,
        service_secrets=service_secrets,
        iam=iam or ClaimAdminIam(),
        health_checks=list(infra.checks),
        connectors=ConnectorService(ctx),
        oauth=oauth,
        refresher=refresher,
        infrastructure=infra,
        relay=relay,
        read_cache=infra.cache,
        backend=infra.backend,
        closers=[provider.aclose],
    )


#: settings another process may change at run time through the key-value store (JSON object at
#: ``settings.etcd_config_key``); picked up on reload and by the etcd watcher
RELOADABLE = (
    "oauth_allowed_origins",
    "oauth_redirect_path",
    "oauth_post_auth_path",
    "oauth_state_ttl_seconds",
    "oauth_legacy_redirect_uri",
    "refresh_margin_seconds",
    "refresh_batch_size",
    "refresh_concurrency",
    "custom_providers",
    "public_url",
)


async def _with_stored_overrides(settings: Settings, store: KeyValueStore) -> Settings:
    found = await store.get(settings.etcd_config_key)
    if found is None:
        return settings
    try:
        data = json.loads(found.value)
    except json.JSONDecodeError:
        raise SettingsError.for_field("etcd_config_key", "stored configuration is not JSON") from None
    if not isinstance(data, dict):
        raise SettingsError.for_field("etcd_config_key", "stored configuration is not an object")
    unknown = sorted(set(data) - set(RELOADABLE))
    if unknown:
        raise SettingsError.for_field(unknown[0], "cannot be changed at run time")
    from entrypoints.settings import apply_overrides

    return apply_overrides(settings, data)


def _policy(settings: Settings) -> RefreshPolicy:
    return RefreshPolicy(margin=timedelta(seconds=settings.refresh_margin_seconds))
