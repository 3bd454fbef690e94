"""What every application service needs, bundled once by the composition root."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, TypeVar

from attrs import define, field

from connector_core.catalog import Catalog
from connector_core.errors import Conflict, ValidationError
from connector_core.model.connector import EventRoutes
from connector_core.ports.clock import Clock
from connector_core.ports.ids import IdSource, RandomSource
from connector_core.ports.kv_store import KeyValueStore
from connector_core.ports.unit_of_work import UnitOfWorkFactory
from connector_core.tokens import RefreshPolicy, TokenLifecycle

T = TypeVar("T")


def _no_routes(key: str) -> EventRoutes:
    return EventRoutes()


@define
class ServiceContext:
    catalog: Catalog
    uow: UnitOfWorkFactory
    secrets: KeyValueStore
    clock: Clock
    ids: IdSource
    random: RandomSource
    policy: RefreshPolicy = field(factory=RefreshPolicy)
    routes: Callable[[str], EventRoutes] = _no_routes
    conflict_retries: int = 3
    #: a connector that needs re-authentication is also disabled (``appDisabled``): consumers of
    #: the existing service stop syncing on that event only (the compatibility profile)
    reauthentication_disables: bool = False

    @property
    def lifecycle(self) -> TokenLifecycle:
        return TokenLifecycle(self.policy, self.random)

    async def retry_on_conflict(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` again when a concurrent writer won (optimistic concurrency)."""
        for attempt in range(self.conflict_retries):
            try:
                return await op()
            except Conflict:
                if attempt == self.conflict_retries - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


def secret_path(connector_key: str, org_id: str) -> str:
    """Where a connector's secret configuration fields live in the secret store."""
    return f"/services/connectors/{connector_key}/config/{org_id}"


async def read_secrets(
    store: KeyValueStore, connector_key: str, org_id: str, *, named: Collection[str] | None = None
) -> dict[str, str]:
    """The stored secret fields of one connector (decrypted by the store), by dotted path; with
    ``named`` (its configuration's ``secrets_set``) only those: a value its configuration does
    not name (one a save is about to remove, or failed to) is not the connector's secret."""
    found = await store.get(secret_path(connector_key, org_id))
    if found is None:
        return {}
    data: Any = json.loads(found.value)
    if not isinstance(data, Mapping):
        raise ValidationError("stored secrets are not an object")
    return {str(k): str(v) for k, v in data.items() if named is None or k in named}
