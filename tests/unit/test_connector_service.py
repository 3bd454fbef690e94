"""ConnectorService.update_configuration: secrets and configuration are saved together or not
at all, a retried save still announces its change, concurrent secret writers lose nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.memory import MemoryKeyValueStore, MemoryOutboxReader, MemoryStorage
from adapters.system import ManualClock
from connector_core.catalog import Catalog
from connector_core.errors import Conflict, Unavailable
from connector_core.model.connector import AuthState
from connector_core.services.connectors import ConfigUpdate, ConnectorService
from connector_core.services.context import ServiceContext, secret_path
from tests.conftest import CountingIds, SeededRandom

PATH = secret_path("googleWorkspace", "org-1")


class FlakyUnitOfWork:
    """Wraps a unit of work; commit fails with ``error`` while ``failures`` lasts."""

    def __init__(self, inner: Any, box: dict[str, Any]) -> None:
        self._inner, self._box = inner, box
        self.connectors, self.tokens, self.outbox = inner.connectors, inner.tokens, inner.outbox

    async def __aenter__(self) -> FlakyUnitOfWork:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._inner.__aexit__(*exc)

    async def commit(self) -> None:
        if self._box["failures"] > 0:
            self._box["failures"] -= 1
            raise self._box["error"]
        await self._inner.commit()


def service(catalog: Catalog, t0: Any, box: dict[str, Any]) -> tuple[ConnectorService, MemoryKeyValueStore, Any]:
    storage = MemoryStorage()
    kv = MemoryKeyValueStore()
    ctx = ServiceContext(
        catalog=catalog,
        uow=lambda: FlakyUnitOfWork(storage.unit_of_work(), box),
        secrets=kv,
        clock=ManualClock(t0),
        ids=CountingIds(),
        random=SeededRandom(),
    )
    return ConnectorService(ctx), kv, MemoryOutboxReader(storage)


def update(secret: str | None, client_id: str = "cid") -> ConfigUpdate:
    auth: dict[str, str] = {"clientId": client_id}
    if secret is not None:
        auth["clientSecret"] = secret
    return ConfigUpdate(base_url="http://localhost:3000", auth=auth, sync={}, filters={})


async def stored_secret(kv: MemoryKeyValueStore) -> str | None:
    found = await kv.get(PATH)
    return None if found is None else json.loads(found.value).get("auth.clientSecret")


async def test_a_failed_save_keeps_the_old_secret(catalog: Catalog, t0: Any) -> None:
    box: dict[str, Any] = {"failures": 0, "error": Unavailable("storage down")}
    svc, kv, _ = service(catalog, t0, box)
    await svc.update_configuration("org-1", "u", "googleWorkspace", update("OLD"))
    box["failures"] = 1
    with pytest.raises(Unavailable):
        await svc.update_configuration("org-1", "u", "googleWorkspace", update("NEW", client_id="cid2"))
    assert await stored_secret(kv) == "OLD"
    view = await svc.get("org-1", "googleWorkspace")
    assert view.connector.config.auth["clientId"] == "cid"


async def test_a_failed_first_save_leaves_no_secret(catalog: Catalog, t0: Any) -> None:
    box: dict[str, Any] = {"failures": 1, "error": Unavailable("storage down")}
    svc, kv, _ = service(catalog, t0, box)
    with pytest.raises(Unavailable):
        await svc.update_configuration("org-1", "u", "googleWorkspace", update("FIRST"))
    assert await kv.get(PATH) is None


async def test_a_retried_save_still_announces_the_secret_change(catalog: Catalog, t0: Any) -> None:
    box: dict[str, Any] = {"failures": 0, "error": Conflict("someone else won")}
    svc, kv, outbox = service(catalog, t0, box)
    await svc.update_configuration("org-1", "u", "googleWorkspace", update("S1"))
    # pretend the connector was authorized
    view = await svc.get("org-1", "googleWorkspace")
    assert view.connector.auth_status.state == AuthState.NOT_AUTHENTICATED
    seen = len(await outbox.recent(100))
    box["failures"] = 1  # the first commit conflicts, the retry succeeds
    view = await svc.update_configuration("org-1", "u", "googleWorkspace", update("S2"))
    events = [m.event for m in (await outbox.recent(100))[seen:]]
    configured = [e for e in events if e.event_type == "connectorConfigured"]
    assert len(configured) == 1 and "auth.clientSecret" in configured[0].changed_fields  # type: ignore[attr-defined]
    assert await stored_secret(kv) == "S2"


async def test_concurrent_secret_writers_lose_nothing(catalog: Catalog, t0: Any) -> None:
    """Another writer changes the stored secrets between our read and our write: our
    compare-and-swap fails, the use case retries on the fresh value and keeps both changes."""
    box: dict[str, Any] = {"failures": 0, "error": Conflict("x")}
    svc, kv, _ = service(catalog, t0, box)
    await svc.update_configuration("org-1", "u", "googleWorkspace", update("S1"))
    real_put = kv.put
    raced = False

    async def racing_put(key: str, value: str, *, expected_revision: int | None = None) -> int:
        nonlocal raced
        if not raced:
            raced = True  # someone else stores a service account key first
            current = await kv.get(key)
            assert current is not None
            other = {**json.loads(current.value), "auth.serviceAccountJson": "{}"}
            await real_put(key, json.dumps(other))
        return await real_put(key, value, expected_revision=expected_revision)

    kv.put = racing_put  # type: ignore[method-assign]
    await svc.update_configuration("org-1", "u", "googleWorkspace", update("S2"))
    found = await kv.get(PATH)
    assert found is not None
    assert json.loads(found.value) == {"auth.clientSecret": "S2", "auth.serviceAccountJson": "{}"}
