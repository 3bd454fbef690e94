"""ConnectorService.update_configuration: secrets and configuration are saved together or not
at all, a retried save still announces its change, concurrent secret writers lose nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.memory import MemoryKeyValueStore, MemoryOutboxReader, MemoryStorage
from adapters.system import ManualClock
from connector_core.catalog import Catalog, thaw
from connector_core.errors import CommitOutcomeUnknown, Conflict, NotConfigured, Unavailable
from connector_core.model.connector import AuthState
from connector_core.model.events import ConnectorConfigured
from connector_core.services.connectors import ConfigUpdate, ConnectorService
from connector_core.services.context import ServiceContext, secret_path
from connector_core.services.providers import ProviderResolver
from tests.conftest import CountingIds, SeededRandom

PATH = secret_path("googleWorkspace", "org-1")


class FlakyUnitOfWork:
    """Wraps a unit of work; commit fails with ``error`` while ``failures`` lasts (after storing
    the data when ``lands``); reads fail with ``error`` while ``read_failures`` lasts."""

    def __init__(self, inner: Any, box: dict[str, Any]) -> None:
        self._inner, self._box = inner, box
        self.connectors, self.tokens, self.outbox = inner.connectors, inner.tokens, inner.outbox

    async def __aenter__(self) -> FlakyUnitOfWork:
        if self._box.get("read_failures", 0) > 0:
            self._box["read_failures"] -= 1
            raise self._box["error"]
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._inner.__aexit__(*exc)

    async def commit(self) -> None:
        if self._box["failures"] > 0:
            self._box["failures"] -= 1
            if self._box.get("lands"):
                await self._inner.commit()
            self._box["read_failures"] = self._box.get("then_reads_fail", 0)
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
    return ConnectorService(ctx, sleep=no_wait), kv, MemoryOutboxReader(storage)


async def no_wait(delay: float) -> None:
    return None


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
    configured = [e for e in events if isinstance(e, ConnectorConfigured)]
    assert len(configured) == 1 and "auth.clientSecret" in configured[0].changed_fields
    assert await stored_secret(kv) == "S2"


def two_secrets(catalog: Catalog) -> Catalog:
    """A provider whose OAuth configuration has two secrets: two writers can each change one."""
    schema = catalog.get("googleWorkspace").config_schema
    auth = dict(schema["properties"]["auth"])
    signing = {"type": "string", "minLength": 1, "writeOnly": True}
    auth["properties"] = {**auth["properties"], "signingKey": signing}
    body = {**thaw(schema), "properties": {**thaw(schema["properties"]), "auth": thaw(auth)}}
    return catalog.with_custom_providers(
        [
            {
                "key": "twoSecrets",
                "configSchema": body,
                "oauth": {"authorizeUrl": "https://p/a", "tokenUrl": "https://p/t"},
            }
        ]
    )


async def test_concurrent_secret_writers_lose_nothing(
    catalog: Catalog, t0: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another save changes the stored secrets between our read and our write: our
    compare-and-swap fails, the use case retries on the fresh value and keeps both changes."""
    box: dict[str, Any] = {"failures": 0, "error": Conflict("x")}
    svc, kv, _ = service(two_secrets(catalog), t0, box)
    await svc.update_configuration("org-1", "u", "twoSecrets", update("S1"))
    real_put = kv.put
    raced = False

    async def racing_put(key: str, value: str, *, expected_revision: int | None = None) -> int:
        nonlocal raced
        if not raced:
            raced = True  # someone else stores the signing key first (a whole save)
            theirs = ConfigUpdate(
                base_url="http://localhost:3000", auth={"clientId": "cid", "signingKey": "K"}, sync={}, filters={}
            )
            await svc.update_configuration("org-1", "v", "twoSecrets", theirs)
        return await real_put(key, value, expected_revision=expected_revision)

    monkeypatch.setattr(kv, "put", racing_put)
    view = await svc.update_configuration("org-1", "u", "twoSecrets", update("S2"))
    found = await kv.get(secret_path("twoSecrets", "org-1"))
    assert found is not None
    assert json.loads(found.value) == {"auth.clientSecret": "S2", "auth.signingKey": "K"}
    assert view.connector.config.secrets_set == {"auth.clientSecret", "auth.signingKey"}


async def configured_events(outbox: Any) -> list[Any]:
    return [m.event for m in await outbox.recent(100) if m.event.event_type == "connectorConfigured"]


async def test_a_save_whose_commit_landed_although_it_raised_keeps_its_secret(catalog: Catalog, t0: Any) -> None:
    """MongoDB's "commit outcome unknown": the commit stored the configuration, then raised.
    The service finds out that it landed: the secret stays, the caller is told it worked, and
    the one connectorConfigured event describes a change that really happened."""
    box: dict[str, Any] = {"failures": 0, "error": CommitOutcomeUnknown("commit outcome unknown")}
    svc, kv, outbox = service(catalog, t0, box)
    await svc.update_configuration("org-1", "u", "googleWorkspace", update("OLD"))
    box.update(failures=1, lands=True)
    view = await svc.update_configuration("org-1", "u", "googleWorkspace", update("NEW", client_id="cid2"))
    assert view.connector.config.auth["clientId"] == "cid2"
    assert await stored_secret(kv) == "NEW"
    stored = (await svc.get("org-1", "googleWorkspace")).connector
    assert stored.config.auth["clientId"] == "cid2" and stored.version == view.connector.version
    assert len(await configured_events(outbox)) == 2


async def test_a_first_save_whose_commit_landed_although_it_raised_keeps_its_secret(catalog: Catalog, t0: Any) -> None:
    box: dict[str, Any] = {"failures": 1, "lands": True, "error": CommitOutcomeUnknown("commit outcome unknown")}
    svc, kv, outbox = service(catalog, t0, box)
    await svc.update_configuration("org-1", "u", "googleWorkspace", update("FIRST"))
    assert await stored_secret(kv) == "FIRST"
    assert (await svc.get("org-1", "googleWorkspace")).connector.config.auth["clientId"] == "cid"
    assert len(await configured_events(outbox)) == 1


@pytest.mark.parametrize("client_id", ["cid2", "cid"])  # the second changes only the secret
async def test_a_save_that_did_not_land_is_fenced_then_its_secret_rolled_back(
    catalog: Catalog, t0: Any, client_id: str
) -> None:
    """The commit's outcome was unknown and it did not land (yet): the service takes the version
    it expected, so that commit can never land later, then rolls the secret back and reports
    the failure."""
    box: dict[str, Any] = {"failures": 0, "error": CommitOutcomeUnknown("no answer to the commit")}
    svc, kv, outbox = service(catalog, t0, box)
    before = (await svc.update_configuration("org-1", "u", "googleWorkspace", update("OLD"))).connector
    box["failures"] = 1
    with pytest.raises(Unavailable, match="not saved"):
        await svc.update_configuration("org-1", "u", "googleWorkspace", update("NEW", client_id=client_id))
    assert await stored_secret(kv) == "OLD"
    stored = (await svc.get("org-1", "googleWorkspace")).connector
    assert stored.config == before.config
    assert stored.version == before.version + 1  # the fence: a late commit of the failed save conflicts
    assert len(await configured_events(outbox)) == 1


async def test_a_save_whose_outcome_stays_unknown_leaves_both_and_says_so(catalog: Catalog, t0: Any) -> None:
    """The commit's outcome was unknown and storage does not answer while it is checked: nothing
    is rolled back (the commit may still land), and the caller is told the outcome is unknown."""
    box: dict[str, Any] = {"failures": 0, "error": CommitOutcomeUnknown("no answer to the commit")}
    svc, kv, _ = service(catalog, t0, box)
    await svc.update_configuration("org-1", "u", "googleWorkspace", update("OLD"))
    box.update(failures=1, then_reads_fail=10)
    with pytest.raises(Unavailable, match="unknown") as info:
        await svc.update_configuration("org-1", "u", "googleWorkspace", update("NEW", client_id="cid2"))
    assert "NEW" not in info.value.message
    assert await stored_secret(kv) == "NEW"  # left as written: saving again converges
    box["read_failures"] = 0
    await svc.update_configuration("org-1", "u", "googleWorkspace", update("NEW", client_id="cid2"))
    assert (await svc.get("org-1", "googleWorkspace")).connector.config.auth["clientId"] == "cid2"


@pytest.mark.parametrize("reads", ["answer", "fail"])
async def test_a_commit_that_certainly_failed_rolls_the_secret_back_without_reconciling(
    catalog: Catalog, t0: Any, reads: str
) -> None:
    """A plain Unavailable from the commit (refused, or the store unreachable before the commit
    was applied) means nothing was stored: the secret is undone at once. The reconcile (reads,
    and a fencing version bump) is only for CommitOutcomeUnknown: here it would bump the version
    for nothing, or, with reads failing too, leave the new secret beside the old configuration."""
    box: dict[str, Any] = {"failures": 0, "error": Unavailable("storage down")}
    svc, kv, outbox = service(catalog, t0, box)
    before = (await svc.update_configuration("org-1", "u", "googleWorkspace", update("OLD"))).connector
    box.update(failures=1, then_reads_fail=10 if reads == "fail" else 0)
    with pytest.raises(Unavailable, match="not saved"):
        await svc.update_configuration("org-1", "u", "googleWorkspace", update("NEW", client_id="cid2"))
    assert await stored_secret(kv) == "OLD"
    assert box.get("read_failures", 0) == box["then_reads_fail"]  # no reconciling read was made
    box["read_failures"] = 0
    stored = (await svc.get("org-1", "googleWorkspace")).connector
    assert stored.config == before.config and stored.version == before.version  # no fence
    assert len(await configured_events(outbox)) == 1


async def test_an_unexpected_error_from_the_commit_is_neither_reconciled_nor_rolled_back(
    catalog: Catalog, t0: Any
) -> None:
    """Not a storage answer (a bug, a cancelled request): the outcome is unknown, both stay."""
    box: dict[str, Any] = {"failures": 0, "error": RuntimeError("a bug")}
    svc, kv, _ = service(catalog, t0, box)
    before = (await svc.update_configuration("org-1", "u", "googleWorkspace", update("OLD"))).connector
    box["failures"] = 1
    with pytest.raises(RuntimeError):
        await svc.update_configuration("org-1", "u", "googleWorkspace", update("NEW", client_id="cid2"))
    assert await stored_secret(kv) == "NEW"
    assert (await svc.get("org-1", "googleWorkspace")).connector.version == before.version


# -- an auth type change and a removal: the secrets a configuration names always exist ----------

SERVICE_ACCOUNT = ConfigUpdate(
    base_url="http://localhost:3000",
    auth={"authType": "SERVICE_ACCOUNT", "adminEmail": "a@acme.example", "serviceAccountJson": "{}"},
    sync={},
    filters={},
)


async def stored_secrets(kv: MemoryKeyValueStore) -> dict[str, str] | None:
    found = await kv.get(PATH)
    return None if found is None else dict(json.loads(found.value))


async def test_switching_auth_type_removes_the_old_secret_only_after_the_commit(
    catalog: Catalog, t0: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the commit runs, the store holds the secrets of both the stored and the new
    configuration; the one the new configuration no longer names goes after it committed."""
    box: dict[str, Any] = {"failures": 0, "error": Unavailable("storage down")}
    svc, kv, _ = service(catalog, t0, box)
    await svc.update_configuration("org-1", "u", "googleWorkspace", update("OLD"))
    seen: list[dict[str, str] | None] = []
    real_commit = FlakyUnitOfWork.commit

    async def watching_commit(uow: FlakyUnitOfWork) -> None:
        seen.append(await stored_secrets(kv))
        await real_commit(uow)

    monkeypatch.setattr(FlakyUnitOfWork, "commit", watching_commit)
    view = await svc.update_configuration("org-1", "u", "googleWorkspace", SERVICE_ACCOUNT)
    assert seen == [{"auth.clientSecret": "OLD", "auth.serviceAccountJson": "{}"}]
    assert await stored_secrets(kv) == {"auth.serviceAccountJson": "{}"}
    assert view.connector.config.secrets_set == {"auth.serviceAccountJson"}

    box["failures"] = 1  # a switch back whose commit fails keeps what the stored one names
    with pytest.raises(Unavailable, match="not saved"):
        back = ConfigUpdate(
            base_url="http://localhost:3000",
            auth={"authType": "OAUTH", "clientId": "cid", "clientSecret": "NEW"},
            sync={},
            filters={},
        )
        await svc.update_configuration("org-1", "u", "googleWorkspace", back)
    assert await stored_secrets(kv) == {"auth.serviceAccountJson": "{}"}


async def test_a_removal_that_fails_after_the_commit_is_harmless_and_the_next_save_finishes_it(
    catalog: Catalog, t0: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    box: dict[str, Any] = {"failures": 0, "error": Unavailable("storage down")}
    svc, kv, _ = service(catalog, t0, box)
    await svc.update_configuration("org-1", "u", "googleWorkspace", update("OLD"))
    real_put, real_delete = kv.put, kv.delete

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise Unavailable("secret store down")

    monkeypatch.setattr(kv, "put", down)
    monkeypatch.setattr(kv, "delete", down)
    removed = ConfigUpdate(
        base_url="http://localhost:3000", auth={"clientId": "cid", "clientSecret": None}, sync={}, filters={}
    )
    view = await svc.update_configuration("org-1", "u", "googleWorkspace", removed)
    assert view.connector.config.secrets_set == frozenset()
    assert await stored_secrets(kv) == {"auth.clientSecret": "OLD"}  # left over, named by nothing
    with pytest.raises(NotConfigured, match=r"auth\.clientSecret"):  # so nothing uses it
        await ProviderResolver(svc.ctx, provider=None).resolve(  # type: ignore[arg-type]  # never reached
            "org-1", catalog.get("googleWorkspace"), view.connector
        )

    monkeypatch.setattr(kv, "put", real_put)
    monkeypatch.setattr(kv, "delete", real_delete)
    view = await svc.update_configuration("org-1", "u", "googleWorkspace", update(None, client_id="cid2"))
    assert view.connector.config.secrets_set == frozenset()  # not brought back by a save that left it out
    assert await kv.get(PATH) is None
