"""The etcd backend: the key-value store, leases and the configuration watch on one client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from attrs import frozen

from adapters.etcd import EtcdConfigWatcher, EtcdKeyValueStore, EtcdLeaseLock, connect_etcd
from adapters.factories.sections import EtcdSettings
from adapters.health import require
from connector_core.errors import ValidationError
from connector_core.ports.clock import Clock
from connector_core.ports.lock import LeaseLock


@frozen
class EtcdBackend:
    store: EtcdKeyValueStore
    namespace: str

    def lock(self, clock: Clock) -> LeaseLock:
        return EtcdLeaseLock(self.store.client, clock, prefix=self.namespace + "/services/locks/")

    def config_watcher(self, key: str, on_change: Callable[[], Awaitable[None]]) -> EtcdConfigWatcher:
        """Calls ``on_change`` when another process changes ``key`` (in this namespace)."""
        return EtcdConfigWatcher(self.store.client, self.namespace + key, on_change)

    async def aclose(self) -> None:
        await self.store.aclose()


async def open_etcd(settings: EtcdSettings) -> EtcdBackend:
    if (settings.user is None) != (settings.password is None):
        raise ValidationError.for_field("user", "etcd authentication needs both user and password")
    store = connect_etcd(
        settings.host,
        settings.port,
        user=settings.user,
        password=settings.password,
        timeout=settings.timeout_seconds,
        namespace=settings.namespace,
    )
    try:
        await require(store.check, f"etcd at {settings.host}:{settings.port}")
    except BaseException:
        await store.aclose()
        raise
    return EtcdBackend(store, settings.namespace)
