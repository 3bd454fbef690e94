"""The MongoDB adapter when the server goes away: fast ``Unavailable``, nothing half-written,
recovery without restarting the adapter, and refusal of a server without transactions."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymongo
import pytest
from bson.binary import UUID_SUBTYPE, Binary
from pymongo import monitoring
from pymongo.errors import PyMongoError

from adapters.crypto import Aead, Keyring
from adapters.mongo import (
    MongoDatabase,
    MongoLeaseLock,
    MongoOAuthStateStore,
    MongoOutboxReader,
    MongoUnitOfWork,
    make_client,
)
from adapters.system import ManualClock
from connector_core.catalog import Catalog
from connector_core.deadline import deadline
from connector_core.errors import CommitOutcomeUnknown, Unavailable
from connector_core.model.connector import Connector
from connector_core.model.events import SyncAction
from connector_core.ports.oauth_state import PendingAuthorization
from connector_core.ports.unit_of_work import UnitOfWork
from connector_core.tokens import TokenRecord
from tests import servers
from tests.builders import api_token_connector, token_record
from tests.conftest import CountingIds

pytestmark = pytest.mark.mongo

PLANTED = "PLANTED-ACCESS-TOKEN"


def url_of(server: servers.ServerProcess) -> str:
    return f"mongodb://127.0.0.1:{server.port}/?directConnection=true"


@contextlib.asynccontextmanager
async def database(url: str, clock: ManualClock, **client_options: Any) -> AsyncIterator[MongoDatabase]:
    db = MongoDatabase(
        make_client(url, timeout_seconds=2.0, **client_options),
        f"faults_{uuid.uuid4().hex}",
        sealer=Aead(Keyring.generate()),
        clock=clock,
    )
    try:
        await db.ensure_indexes()
        yield db
    finally:
        with contextlib.suppress(PyMongoError):
            await db.client.drop_database(db.db.name)
        await db.aclose()


async def add_connector(db: MongoDatabase, catalog: Catalog, org: str, clock: ManualClock) -> Connector:
    c = api_token_connector(catalog, org, clock.now())
    async with MongoUnitOfWork(db) as uow:
        await uow.connectors.add(c)
        await uow.commit()
    return c


async def stage_change(
    uow: UnitOfWork, catalog: Catalog, org: str, clock: ManualClock
) -> tuple[Connector, TokenRecord]:
    """Enable the connector and add a token, with their events: one unit of work, three collections."""
    c = await uow.connectors.get(org, "confluence")
    assert c is not None
    c.enable(catalog.get("confluence"), sync_action=SyncAction.NONE, by="u", now=clock.now(), ids=CountingIds("e"))
    rec = token_record(org, clock.now(), key="confluence", access=PLANTED)
    await uow.connectors.save(c)
    await uow.tokens.add(rec)
    await uow.outbox.add([*c.pull_events(), *rec.pull_events()])
    return c, rec


@contextlib.contextmanager
def server_down(server: servers.ServerProcess) -> Iterator[None]:
    """Stop ``server`` for the block and always start it again (other tests share it)."""
    try:
        server.stop()
        yield
    finally:
        server.start()


async def test_commit_against_a_stopped_server_is_unavailable_fast_and_the_adapter_recovers(
    mongo_server: servers.ServerProcess, catalog: Catalog
) -> None:
    # The session server itself (not CM_TEST_MONGO_URL): this test stops and restarts it.
    clock = ManualClock()
    org = f"org-{uuid.uuid4().hex[:8]}"
    async with database(url_of(mongo_server), clock) as db:
        before = await add_connector(db, catalog, org, clock)
        async with MongoUnitOfWork(db) as uow:
            connector, record = await stage_change(uow, catalog, org, clock)
            with server_down(mongo_server):
                started = time.monotonic()
                with pytest.raises(Unavailable) as failed:
                    await uow.commit()
                elapsed = time.monotonic() - started
                assert elapsed < 3.5, f"took {elapsed:.1f}s to notice the server is down"
                assert isinstance(failed.value.__cause__, PyMongoError)  # re-raised from the driver error
                assert PLANTED not in str(failed.value) and PLANTED not in repr(failed.value)
                # nothing of the failed commit reached the objects
                assert connector.version == before.version == 1 and record.version == 0
                # every other entry point answers Unavailable quickly too (asked together: each
                # waits its own server-selection timeout)

                async def read_connector() -> object:
                    async with MongoUnitOfWork(db) as reader:
                        return await reader.connectors.get(org, "confluence")

                asked = time.monotonic()
                checked, *outcomes = await asyncio.gather(
                    db.check(),
                    read_connector(),
                    MongoOutboxReader(db).pending(10),
                    MongoOAuthStateStore(db).take("nope"),
                    MongoLeaseLock(db, clock).acquire("lease", 5),
                    return_exceptions=True,
                )
                assert checked is False
                assert [type(o) for o in outcomes] == [Unavailable] * 4, outcomes
                assert time.monotonic() - asked < 3.5
        # The server is back (with empty in-memory storage): the same adapter works again.
        assert await db.check() is True
        again = await add_connector(db, catalog, org, clock)
        async with MongoUnitOfWork(db) as uow:
            connector, record = await stage_change(uow, catalog, org, clock)
            await uow.commit()
        assert (again.version, connector.version, record.version) == (1, 2, 1)
        async with MongoUnitOfWork(db) as uow:
            stored = await uow.tokens.get_for_connector(org, "confluence")
        assert stored is not None and stored.tokens.access_token == PLANTED
        events = [m.event.event_type for m in await MongoOutboxReader(db).recent(10)]
        assert events == ["appEnabled", "TOKEN_CREATED"]


class StopOnCommand(monitoring.CommandListener):
    """Stops the server just before the driver sends a given command (once armed)."""

    def __init__(self, server: servers.ServerProcess, command: str, collection: str) -> None:
        self.server = server
        self.command = command
        self.collection = collection
        self.armed = False
        self.fired = False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.armed and event.command_name == self.command and event.command.get(self.command) == self.collection:
            self.armed = False
            self.fired = True
            self.server.stop()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _ready(port: int) -> bool:
    if not servers.port_open(port):
        return False
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=500
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


@contextlib.contextmanager
def private_server(tmp_path: Path, *flags: str) -> Iterator[servers.ServerProcess]:
    """A server of this test's own; ``--storage-path`` on disk unless flags say otherwise."""
    exe = shutil.which("secantusd-py", path=str(servers.BIN)) or "secantusd-py"
    rest = ["--storage-path", str(tmp_path / "data"), "--cache-size", "64M", "--log-level", "WARNING", *flags]
    proc = servers.ServerProcess(
        "mongo-private", lambda port, _: [exe, "--host", "127.0.0.1", "--port", str(port), *rest], _ready, timeout=60
    )
    try:
        proc.start()
        yield proc
    finally:
        proc.close()


async def test_server_dying_mid_transaction_leaves_nothing_half_written(tmp_path: Path, catalog: Catalog) -> None:
    """The server dies after the transaction bumped the connector's event counter and rewrote the
    connector, before the token and the events were written. On-disk storage survives the restart: none
    of the transaction's writes are there."""
    clock = ManualClock()
    org = f"org-{uuid.uuid4().hex[:8]}"
    with private_server(tmp_path) as server:
        stopper = StopOnCommand(server, "insert", "tokens")
        async with database(url_of(server), clock, event_listeners=[stopper]) as db:
            await add_connector(db, catalog, org, clock)
            async with MongoUnitOfWork(db) as uow:
                connector, record = await stage_change(uow, catalog, org, clock)
                stopper.armed = True
                with pytest.raises(Unavailable):
                    await uow.commit()
            assert stopper.fired
            server.start()
            assert (connector.version, record.version) == (1, 0)
            async with MongoUnitOfWork(db) as uow:
                stored = await uow.connectors.get(org, "confluence")
                assert await uow.tokens.get(record.id) is None
                assert await uow.tokens.get_for_connector(org, "confluence") is None
            assert stored is not None and stored.version == 1 and not stored.is_enabled
            assert await MongoOutboxReader(db).recent(10) == []
            counter = await db.counters.find_one({"_id": f"outbox_seq:{org}:confluence"})
            assert counter is None or counter["value"] == 0  # the increment was rolled back too
            # and the unit of work goes through once the server is back, numbering from 1
            async with MongoUnitOfWork(db) as uow:
                connector, record = await stage_change(uow, catalog, org, clock)
                await uow.commit()
            pending = await MongoOutboxReader(db).pending(10)
            assert [m.event.event_type for m in pending] == ["appEnabled", "TOKEN_CREATED"]
            stored_events = await db.outbox.find({}).sort("key_seq", 1).to_list()
            assert [d["key_seq"] for d in stored_events] == [1, 2]


async def test_a_standalone_server_is_refused_at_start_up(tmp_path: Path) -> None:
    with private_server(tmp_path, "--standalone") as server:
        db = MongoDatabase(
            make_client(url_of(server)), "standalone", sealer=Aead(Keyring.generate()), clock=ManualClock()
        )
        try:
            with pytest.raises(Unavailable, match="mongo_url") as refused:
                await db.ensure_indexes()
            assert "replica set" in str(refused.value)
        finally:
            await db.aclose()


async def test_oauth_state_ttl_grace_can_change_on_an_existing_index(mongo_url: str) -> None:
    clock = ManualClock(datetime.now(UTC))  # real time: the server's TTL sweeper must leave it alone
    async with database(mongo_url, clock) as db:
        db.oauth_state_ttl_grace = timedelta(minutes=5)
        await db.ensure_indexes()  # the index exists with another expireAfterSeconds
        indexes = {i["name"]: i async for i in await db.oauth_states.list_indexes()}
        assert indexes["ttl"]["expireAfterSeconds"] == 300
        store = MongoOAuthStateStore(db)
        pending = PendingAuthorization(
            state_hash="h" * 16,
            org_id="o",
            user_id="u",
            connector_key="jira",
            redirect_uri="https://app.example.com/cb",
            expires_at=clock.now() + timedelta(minutes=1),
        )
        await store.put(pending)
        raw = await db.oauth_states.find_one({"_id": pending.state_hash})
        assert raw is not None and "app.example.com" not in str(raw)  # sealed
        assert await store.take(pending.state_hash) == pending


_HANGING_WRITER = """
import asyncio, os, signal, sys
from pymongo import monitoring
from adapters.crypto import Aead, Keyring
from adapters.mongo import MongoDatabase, MongoUnitOfWork, make_client
from adapters.system import ManualClock
from connector_core.catalog import load_default_catalog
from tests.integration.test_mongo_faults import add_connector, stage_change

url, db_name, org = sys.argv[1:4]


class HangBeforeTokens(monitoring.CommandListener):
    armed = False

    def started(self, event):
        if self.armed and event.command_name == "insert" and event.command.get("insert") == "tokens":
            print("hanging", event.command["lsid"]["id"].hex(), flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)  # mid-transaction: its writes so far stay locked

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


async def main():
    hang = HangBeforeTokens()
    clock, catalog = ManualClock(), load_default_catalog()
    db = MongoDatabase(make_client(url, event_listeners=[hang]), db_name, sealer=Aead(Keyring.generate()), clock=clock)
    await add_connector(db, catalog, org, clock)
    async with MongoUnitOfWork(db) as uow:
        await stage_change(uow, catalog, org, clock)
        hang.armed = True
        await uow.commit()


asyncio.run(main())
"""


async def test_a_transaction_abandoned_by_a_hung_process_holds_up_only_its_own_connector(
    mongo_url: str, catalog: Catalog
) -> None:
    """Another process hangs in the middle of committing connector X with its events (its
    transaction keeps what it wrote locked until the server reaps it). Event-bearing writes of
    every other connector go through meanwhile: no write depends on a document every commit
    with events shares (a global outbox counter would block them all for a minute)."""
    clock = ManualClock()
    held, other = f"org-{uuid.uuid4().hex[:8]}", f"org-{uuid.uuid4().hex[:8]}"
    async with database(mongo_url, clock) as db:
        await add_connector(db, catalog, other, clock)
        writer = subprocess.Popen(
            [sys.executable, "-c", _HANGING_WRITER, mongo_url, db.db.name, held],
            cwd=Path(__file__).resolve().parents[2],
            stdout=subprocess.PIPE,
            text=True,
        )
        lsid = ""
        try:
            assert writer.stdout is not None
            said, lsid = writer.stdout.readline().split()
            assert said == "hanging"  # its transaction holds X now
            async with MongoUnitOfWork(db) as uow:
                await stage_change(uow, catalog, other, clock)
                await uow.commit()  # would wait for the hung transaction, then fail, if it shared a document
            events = [m.event for m in await MongoOutboxReader(db).pending(10)]
            assert [(e.org_id, e.event_type) for e in events] == [(other, "appEnabled"), (other, "TOKEN_CREATED")]
        finally:
            writer.kill()
            writer.communicate(timeout=10)
            if lsid:  # the server would hold it for a minute; later tests share the server
                await db.client.admin.command("killSessions", [{"id": Binary(bytes.fromhex(lsid), UUID_SUBTYPE)}])


class HangOnCommand(StopOnCommand):
    """Freezes the server (SIGSTOP) just before the driver sends a given command (once armed)."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.armed and event.command_name == self.command:
            self.armed = False
            self.fired = True
            self.server.hang()


async def test_a_hang_during_commit_is_outcome_unknown_then_settled_and_nothing_stays_locked(
    tmp_path: Path, catalog: Catalog
) -> None:
    """The server freezes while the commit is on its way: the caller learns within its deadline
    that the outcome is unknown (a distinct error), and once the server answers again the
    adapter settles it (aborts what it started), so a read shows all of the change or none of it
    and the next write of the same connector goes through at once (no transaction left holding
    its documents until the server reaps it)."""
    clock = ManualClock()
    org = f"org-{uuid.uuid4().hex[:8]}"
    with private_server(tmp_path) as server:
        hang = HangOnCommand(server, "commitTransaction", "")
        async with database(url_of(server), clock, event_listeners=[hang]) as db:
            await add_connector(db, catalog, org, clock)
            async with MongoUnitOfWork(db) as uow:
                await stage_change(uow, catalog, org, clock)
                hang.armed = True
                try:
                    with deadline(1.0), pytest.raises(CommitOutcomeUnknown) as unknown:
                        await uow.commit()
                    assert hang.fired
                    assert PLANTED not in str(unknown.value)
                    # while it hangs every call answers Unavailable within its deadline
                    async with MongoUnitOfWork(db) as reader:
                        with deadline(1.0), pytest.raises(Unavailable):
                            await reader.connectors.get(org, "confluence")
                finally:
                    server.resume()
            async with MongoUnitOfWork(db) as uow:
                stored = await uow.connectors.get(org, "confluence")
                token = await uow.tokens.get_for_connector(org, "confluence")
            events = [m.event.event_type for m in await MongoOutboxReader(db).recent(10, org_id=org)]
            assert stored is not None
            if stored.is_enabled:  # all of it landed ...
                assert stored.version == 2 and token is not None and events == ["appEnabled", "TOKEN_CREATED"]
            else:  # ... or none of it
                assert stored.version == 1 and token is None and events == []
            # nothing holds the connector any more: its next write goes through within a deadline
            stored.save_filters({"spaces": ["A"]}, by="u", now=clock.now(), ids=CountingIds("f"))
            async with MongoUnitOfWork(db) as uow:
                await uow.connectors.save(stored)
                await uow.outbox.add(stored.pull_events())
                with deadline(1.5):
                    await uow.commit()
