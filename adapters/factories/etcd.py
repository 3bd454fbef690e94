"""The etcd backend: the key-value store, leases and the configuration watch on one client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from attrs import frozen

from adapters.etcd import EtcdConfigWatcher, EtcdKeyValueStore, EtcdLeaseLock, TlsMaterial, connect_etcd
from adapters.factories.sections import LOCKS_PREFIX, EtcdSettings, EtcdTlsFiles
from adapters.health import require
from connector_core.errors import ValidationError
from connector_core.ports.clock import Clock
from connector_core.ports.lock import LeaseLock


@frozen
class EtcdBackend:
    store: EtcdKeyValueStore
    namespace: str

    def lock(self, clock: Clock) -> LeaseLock:
        return EtcdLeaseLock(self.store.members, clock, prefix=self.namespace + LOCKS_PREFIX)

    def config_watcher(self, key: str, on_change: Callable[[], Awaitable[None]]) -> EtcdConfigWatcher:
        """Calls ``on_change`` when another process changes ``key`` (in this namespace)."""
        return EtcdConfigWatcher(self.store.members, self.namespace + key, on_change)

    async def aclose(self) -> None:
        await self.store.aclose()


def _read(field: str, path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValidationError.for_field(field, f"cannot read {path}: {exc.strerror}") from None


def tls_material(files: EtcdTlsFiles) -> TlsMaterial:
    """The PEM files' contents (a file that cannot be read is named with its setting)."""
    if (files.cert_file is None) != (files.key_file is None):
        raise ValidationError.for_field("cert_file", "a client certificate needs both cert_file and key_file")
    return TlsMaterial(
        ca=_read("ca_file", files.ca_file),
        cert=_read("cert_file", files.cert_file),
        key=_read("key_file", files.key_file),
    )


async def open_etcd(settings: EtcdSettings) -> EtcdBackend:
    if (settings.user is None) != (settings.password is None):
        raise ValidationError.for_field("user", "etcd authentication needs both user and password")
    store = connect_etcd(
        *settings.endpoints,
        user=settings.user,
        password=settings.password,
        tls=None if settings.tls is None else tls_material(settings.tls),
        timeout=settings.timeout_seconds,
        member_timeout=settings.member_timeout_seconds,
        namespace=settings.namespace,
    )
    where = ", ".join(f"{host}:{port}" for host, port in settings.endpoints)
    try:
        await require(store.check, f"etcd at {where}", within=settings.start_up_timeout_seconds)
    except BaseException:
        await store.aclose()
        raise
    return EtcdBackend(store, settings.namespace)
