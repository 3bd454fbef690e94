"""The existing deployment as an import source: its etcd read raw and decrypted value by value
with its ``SECRET_KEY`` (the old ``hex(iv):hex(ct):hex(tag)`` format), its MongoDB read only."""

from __future__ import annotations

from typing import Any

from attrs import frozen
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from adapters.crypto import Aead, Keyring
from adapters.etcd import EtcdKeyValueStore, connect_etcd
from adapters.factories.etcd import tls_material
from adapters.factories.sections import PipesHubSourceSettings
from adapters.health import require
from adapters.mongo import make_client
from adapters.mongo.errors import refused_if_credentials
from adapters.pipeshub import PipesHubSource
from adapters.redaction import redact_url
from connector_core.errors import ValidationError


@frozen
class PipesHubSourceBackend:
    source: PipesHubSource
    etcd: EtcdKeyValueStore
    mongo: AsyncMongoClient[dict[str, Any]]

    async def aclose(self) -> None:
        await self.mongo.close()
        await self.etcd.aclose()


async def _mongo_answers(client: AsyncMongoClient[dict[str, Any]]) -> bool:
    try:
        await client.admin.command("ping")
    except OperationFailure as exc:
        refused_if_credentials(exc)
        raise
    return True


async def open_pipeshub_source(settings: PipesHubSourceSettings) -> PipesHubSourceBackend:
    """A source whose etcd and MongoDB answer (else :class:`Unavailable` naming the server)."""
    if not settings.secret_key:
        raise ValidationError.for_field("secret_key", "the existing service's SECRET_KEY is required")
    e = settings.etcd
    etcd = connect_etcd(
        *e.endpoints,
        user=e.user,
        password=e.password,
        tls=None if e.tls is None else tls_material(e.tls),
        timeout=e.timeout_seconds,
        member_timeout=e.member_timeout_seconds,
        namespace=e.namespace,
    )
    where = ", ".join(f"{host}:{port}" for host, port in e.endpoints)
    mongo = make_client(settings.mongo_url, timeout_seconds=settings.mongo_timeout_seconds)
    # a keyring whose only use is the legacy secret: values of the old format are not path-bound
    aead = Aead(Keyring.generate(legacy_secret=settings.secret_key))
    backend = PipesHubSourceBackend(
        PipesHubSource(etcd, lambda envelope, path: aead.open(envelope, path=path), mongo[settings.mongo_database]),
        etcd,
        mongo,
    )
    try:
        await require(etcd.check, f"the existing deployment's etcd at {where}", within=e.start_up_timeout_seconds)
        await require(
            lambda: _mongo_answers(mongo),
            f"the existing deployment's MongoDB at {redact_url(settings.mongo_url)}",
            within=settings.start_up_timeout_seconds,
        )
    except BaseException:
        await backend.aclose()
        raise
    return backend
