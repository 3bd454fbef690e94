"""The adapters the settings choose, on connections opened by each backend's factory.

Each choice (``storage``, ``secrets``, ``locks``, ``cache``, ``events``, ``backend_url``) picks
the backend that provides it; a backend used by several choices (SQLite for storage and
secrets, Redis for cache and locks, etcd for secrets and locks) is opened once. A backend that
does not answer fails start-up with one line naming its setting, and what was opened before is
closed again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from attrs import define, field

from adapters.crypto import Aead
from adapters.factories.memory import memory_cache, memory_kv_store, memory_storage
from adapters.factories.storage_ports import StoragePorts
from adapters.health import NamedCheck, Probe
from adapters.read_cache import ReadThroughCache
from connector_core.errors import ConnectorManagerError, ValidationError
from connector_core.ports.backend_client import BackendConnectorClient
from connector_core.ports.cache import Cache
from connector_core.ports.clock import Clock
from connector_core.ports.event_publisher import EventPublisher
from connector_core.ports.health import HealthCheck
from connector_core.ports.iam import IdentityAccess
from connector_core.ports.kv_store import KeyValueStore
from connector_core.ports.lock import LeaseLock
from entrypoints.settings import Settings, SettingsError

if TYPE_CHECKING:
    from adapters.factories.etcd import EtcdBackend
    from adapters.factories.redis import RedisBackend
    from adapters.factories.sqlite import SQLiteBackend

log = logging.getLogger("connector_manager")

T = TypeVar("T")
Closer = Callable[[], Awaitable[None]]


def connection_key(settings: Settings) -> tuple[object, ...]:
    """What the connections depend on: equal keys, the same connections (a reload shares them)."""
    return (
        settings.storage,
        settings.secrets,
        settings.events,
        settings.cache,
        settings.locks,
        settings.sqlite,
        settings.mongo,
        settings.etcd,
        settings.kafka,
        settings.redis,
        settings.cache_ttl_seconds,
        settings.backend,
        settings.iam,
        settings.user_groups_iam if settings.iam == "mongo-user-groups" else None,
    )


@define
class Infrastructure:
    """Connections and the adapters on them; shared by container generations until a reload
    changes a connection setting."""

    storage: StoragePorts
    #: the secret store before encryption (the composition root wraps it)
    secrets: KeyValueStore
    lock: LeaseLock
    aead: Aead
    cache: ReadThroughCache | None = None
    publisher: EventPublisher | None = None
    backend: BackendConnectorClient | None = None
    #: with ``iam = "mongo-user-groups"``: admin status from the existing deployment's user groups
    iam: IdentityAccess | None = None
    #: with ``secrets = "etcd"``: the client the configuration watch runs on
    etcd: EtcdBackend | None = None
    checks: list[HealthCheck] = field(factory=list)
    closers: list[Closer] = field(factory=list)
    key: tuple[object, ...] = field(default=(), repr=False)

    async def aclose(self) -> None:
        for closer in reversed(self.closers):
            try:
                await closer()
            except Exception:  # closing is best effort
                log.warning("closing an adapter failed", exc_info=True)
        self.closers.clear()


def _setting_error(setting: str, exc: ConnectorManagerError) -> SettingsError:
    """The factory's error as the setting's: a section field it names becomes the flat setting
    (``client_config`` of ``kafka_bootstrap`` → ``kafka_client_config``)."""
    if isinstance(exc, ValidationError) and exc.errors:
        prefix = setting.split("_", 1)[0]
        first = exc.errors[0]
        return SettingsError.for_field(f"{prefix}_{first['path']}", first["message"])
    return SettingsError.for_field(setting, exc.message)


class _Opener:
    """Opens each backend at most once and remembers how to check and close it."""

    def __init__(self, settings: Settings, aead: Aead, clock: Clock) -> None:
        self.settings, self.aead, self.clock = settings, aead, clock
        self.closers: list[Closer] = []
        self.checks: list[HealthCheck] = []
        self._sqlite: SQLiteBackend | None = None
        self._redis: RedisBackend | None = None
        self.etcd: EtcdBackend | None = None

    async def open(self, setting: str, opening: Awaitable[T], close: Callable[[T], Closer]) -> T:
        try:
            opened = await opening
        except ConnectorManagerError as exc:
            raise _setting_error(setting, exc) from None
        self.closers.append(close(opened))
        return opened

    def check(self, name: str, probe: Probe) -> None:
        self.checks.append(NamedCheck(name, True, probe))

    async def sqlite(self) -> SQLiteBackend:
        if self._sqlite is None:
            from adapters.factories.sqlite import open_sqlite

            self._sqlite = await self.open(
                "data_dir", open_sqlite(self.settings.sqlite, sealer=self.aead), lambda b: b.aclose
            )
        return self._sqlite

    async def redis(self) -> RedisBackend:
        if self._redis is None:
            from adapters.factories.redis import open_redis

            setting = "redis_sentinels" if self.settings.redis_sentinels else "redis_url"
            self._redis = await self.open(setting, open_redis(self.settings.redis), lambda b: b.aclose)
            self.check("redis", self._redis.check)
        return self._redis

    async def etcd_backend(self) -> EtcdBackend:
        if self.etcd is None:
            from adapters.factories.etcd import open_etcd

            self.etcd = await self.open(self.settings.etcd_setting, open_etcd(self.settings.etcd), lambda b: b.aclose)
            self.check("etcd", self.etcd.store.check)
        return self.etcd

    async def aclose(self) -> None:
        for closer in reversed(self.closers):
            try:
                await closer()
            except Exception:  # closing after a failed start is best effort
                log.debug("closing an adapter after a failed start failed", exc_info=True)


async def _storage(o: _Opener) -> StoragePorts:
    settings = o.settings
    match settings.storage:
        case "memory":
            return memory_storage(o.clock)
        case "sqlite":
            return (await o.sqlite()).storage(o.clock)
        case "mongo":
            from adapters.factories.mongo import open_mongo

            mongo = await o.open(
                "mongo_url", open_mongo(settings.mongo, sealer=o.aead, clock=o.clock), lambda b: b.aclose
            )
            return mongo.storage(o.clock)


async def _secrets(o: _Opener) -> KeyValueStore:
    match o.settings.secrets:
        case "memory":
            return memory_kv_store()
        case "sqlite":
            sqlite = await o.sqlite()
            if o.settings.storage != "sqlite":
                o.check("secrets", sqlite.db.check)
            return sqlite.kv_store()
        case "etcd":
            return (await o.etcd_backend()).store


async def _lock(o: _Opener, storage: StoragePorts) -> LeaseLock:
    match o.settings.locks:
        case "local":
            return storage.lock
        case "redis":
            return (await o.redis()).lock(o.clock)
        case "etcd":
            if o.settings.secrets != "etcd":
                raise SettingsError.for_field("locks", 'etcd locks need secrets = "etcd"')
            return (await o.etcd_backend()).lock(o.clock)


async def _cache(o: _Opener) -> ReadThroughCache | None:
    cache: Cache
    match o.settings.cache:
        case "none":
            return None
        case "memory":
            cache = memory_cache()
        case "redis":
            cache = (await o.redis()).cache()
    return ReadThroughCache(cache, ttl_seconds=o.settings.cache_ttl_seconds)


async def _publisher(o: _Opener) -> EventPublisher | None:
    if o.settings.events == "outbox":
        return None
    from adapters.factories.kafka import open_kafka

    kafka = await o.open("kafka_bootstrap", open_kafka(o.settings.kafka), lambda p: p.aclose)
    o.check("kafka", kafka.check)
    return kafka


async def _backend(o: _Opener) -> BackendConnectorClient | None:
    section = o.settings.backend
    if section is None:
        return None
    from adapters.factories.backend import open_backend

    client = await o.open("backend_url", open_backend(section), lambda c: c.aclose)
    o.check("connectorBackend", client.check)
    return client


async def _iam(o: _Opener) -> IdentityAccess | None:
    if o.settings.iam == "claims":
        return None
    from adapters.factories.iam import open_user_groups_iam

    backend = await o.open("iam_mongo_url", open_user_groups_iam(o.settings.user_groups_iam), lambda b: b.aclose)
    o.check("iam", backend.iam.check)
    return backend.iam


async def open_infrastructure(settings: Settings, aead: Aead, clock: Clock) -> Infrastructure:
    """Open every backend the settings choose and check each answers."""
    o = _Opener(settings, aead, clock)
    try:
        storage = await _storage(o)
        o.check("storage", storage.check)
        secrets = await _secrets(o)
        lock = await _lock(o, storage)
        cache = await _cache(o)
        publisher = await _publisher(o)
        backend = await _backend(o)
        iam = await _iam(o)
    except BaseException:
        await o.aclose()
        raise
    return Infrastructure(
        storage=storage,
        secrets=secrets,
        lock=lock,
        aead=aead,
        cache=cache,
        publisher=publisher,
        backend=backend,
        iam=iam,
        etcd=o.etcd,
        checks=o.checks,
        closers=o.closers,
        key=connection_key(settings),
    )
