"""Faults on the real servers, mid-traffic: each of MongoDB, etcd, Redis and Kafka is stopped,
killed (-9) and frozen (SIGSTOP) while a ``serve`` process takes writes and reads.

What must hold, for every fault:
- every request is answered quickly: 2xx, or 503 when it needs the server that is away (never
  409 or 500), and what a 2xx read shows is never older than an acknowledged write;
- writes are back shortly after the server is;
- nothing is half-written (a configuration and its secret always belong to the same save) and
  no acknowledged write is lost (the state read afterwards is the last acknowledged write's);
- events keep flowing to Kafka while Redis is away (the relay's lease lives with the outbox),
  and the ones written while Kafka was away reach it once it is back.

Private servers (MongoDB on disk, so a restart keeps its data) and one ``serve`` process are
shared by the tests of this module; each test faults one server three ways.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pymongo
import pytest
from attrs import define, field

from adapters.crypto import Aead, EncryptedKeyValueStore
from adapters.etcd import connect_etcd
from connector_core.services.context import secret_path
from entrypoints.http.auth import issue_user_token
from entrypoints.service_secrets import load_keyring
from entrypoints.settings import load_settings
from tests import servers
from tests.servers import ServerProcess, free_port

pytestmark = [pytest.mark.mongo, pytest.mark.etcd, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
P = "/api/v1/connectors"

#: The issue's requirement is "every request during a fault answered within 2 s" and "writes back
#: within 2 s of recovery"; the service gives a request 1.5 s for its dependency calls. These
#: bounds add a second of slack for a loaded two-core test machine (four servers, the service and
#: the test share it): they catch the old failures (4-10 s answers, a minute of blocked writes),
#: they are not a benchmark.
ANSWER_BOUND = 3.0
RECOVERY_BOUND = 3.0

FAULTS = ("stop", "kill", "hang")


class Serve:
    """One ``connector-manager serve`` process; its output goes to a file (a pipe nobody reads
    would fill up and block it)."""

    def __init__(self, config: Path, data_dir: Path, env: dict[str, str]) -> None:
        self.config, self.data_dir, self.env = config, data_dir, env
        self.port = free_port()
        self.log = data_dir.parent / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "entrypoints.cli", "serve", "--config", str(self.config)),
                    *("--data-dir", str(self.data_dir), "--port", str(self.port)),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-3000:]
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("serve did not become healthy: " + self.log.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@define
class Stack:
    servers: dict[str, ServerProcess]
    serve: Serve
    env: dict[str, str]
    config: Path
    mongo_database: str
    etcd_namespace: str

    @property
    def mongo_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.servers['mongo'].port}/?directConnection=true"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("faults")
    started: dict[str, ServerProcess] = {}
    serve: Serve | None = None
    try:
        makers: list[tuple[str, Callable[[], ServerProcess]]] = [
            ("mongo", lambda: servers.mongo(on_disk=True)),
            ("etcd", servers.etcd),
            ("redis", servers.redis),
            ("kafka", servers.kafka),
        ]
        for name, make in makers:
            started[name] = make()
            started[name].start()
        database, namespace = f"faults_{uuid.uuid4().hex[:8]}", f"/faults-{uuid.uuid4().hex[:8]}"
        config = tmp / "cm.toml"
        config.write_text(
            f"""
storage = "mongo"
secrets = "etcd"
events = "kafka"
cache = "redis"
locks = "redis"
mongo_url = "mongodb://127.0.0.1:{started["mongo"].port}/?directConnection=true"
mongo_database = "{database}"
etcd_endpoint = "127.0.0.1:{started["etcd"].port}"
etcd_namespace = "{namespace}"
kafka_bootstrap = "127.0.0.1:{started["kafka"].port}"
redis_url = "redis://127.0.0.1:{started["redis"].port}/0"
relay_interval_seconds = 0.2
refresh_interval_seconds = 60
""",
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
        env |= {
            "CM_MASTER_KEY": "faults-" + uuid.uuid4().hex,
            "CM_JWT_SECRET": "faults-jwt-" + uuid.uuid4().hex,
            "CM_SCOPED_JWT_SECRET": "faults-scoped-" + uuid.uuid4().hex,
        }
        serve = Serve(config, tmp / "data", env)
        serve.start()
        yield Stack(started, serve, env, config, database, namespace)
    finally:
        if serve is not None:
            serve.stop()
        for server in started.values():
            server.close()


# -- what the test did, and what the service may therefore show ---------------------------------


@define
class Answer:
    what: str
    status: int
    seconds: float


@define
class Ledger:
    """The writes made to one org's connector, in order, and whether each was acknowledged."""

    org: str
    headers: dict[str, str]
    configs: list[tuple[int, bool]] = field(factory=list)
    toggles: list[tuple[bool, bool]] = field(factory=list)
    next_config: int = 0

    @staticmethod
    def possible(writes: list[tuple[Any, bool]], initial: Any) -> set[Any]:
        """What the stored value may be: the last acknowledged write's (or ``initial`` when none
        was), or that of any later write answered 503 (its outcome may be either)."""
        acked = [i for i, (_, ok) in enumerate(writes) if ok]
        start = acked[-1] if acked else -1
        base = writes[start][0] if acked else initial
        return {base} | {value for value, ok in writes[start + 1 :] if not ok}


def headers_for(stack: Stack, org: str) -> dict[str, str]:
    token = issue_user_token(
        stack.env["CM_JWT_SECRET"],
        user_id="faults",
        org_id=org,
        email="ops@example.com",
        admin=True,
        ttl=3600,
        now=int(time.time()),
    )
    return {"Authorization": f"Bearer {token}"}


def config_body(n: int) -> dict[str, Any]:
    return {
        "baseUrl": f"https://acme-{n}.atlassian.net",
        "auth": {"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": f"token-{n}"},
    }


async def timed(what: str, request: Any) -> tuple[Answer, httpx.Response]:
    started = time.monotonic()
    response: httpx.Response = await request
    return Answer(what, response.status_code, time.monotonic() - started), response


async def put_config(client: httpx.AsyncClient, ledger: Ledger) -> Answer:
    n = ledger.next_config = ledger.next_config + 1
    answer, _ = await timed(
        "PUT config", client.put(f"{P}/config/confluence", json=config_body(n), headers=ledger.headers)
    )
    ledger.configs.append((n, answer.status == 200))
    return answer


async def set_enabled(client: httpx.AsyncClient, ledger: Ledger, target: bool) -> Answer:
    answer, _ = await timed(
        "toggle", client.post(f"{P}/toggle/confluence", json={"enabled": target}, headers=ledger.headers)
    )
    ledger.toggles.append((target, answer.status == 200))
    return answer


async def read_config(client: httpx.AsyncClient, ledger: Ledger) -> tuple[Answer, int | None]:
    answer, r = await timed("GET config", client.get(f"{P}/config/confluence", headers=ledger.headers))
    if r.status_code != 200:
        return answer, None
    base_url = r.json()["config"]["baseUrl"]
    return answer, int(base_url.removeprefix("https://acme-").split(".")[0])


async def read_enabled(client: httpx.AsyncClient, ledger: Ledger) -> tuple[Answer, bool | None]:
    answer, r = await timed("GET active", client.get(f"{P}/active", headers=ledger.headers))
    if r.status_code != 200:
        return answer, None
    return answer, "confluence" in [c["key"] for c in r.json()]


# -- the faults -------------------------------------------------------------------------------------


def begin(server: ServerProcess, fault: str) -> None:
    {"stop": server.stop, "kill": server.kill, "hang": server.hang}[fault]()


def end(server: ServerProcess, fault: str) -> None:
    if fault == "hang":
        server.resume()
    else:
        server.start()  # returns once the server answers


@define
class World:
    stack: Stack
    client: httpx.AsyncClient
    config_org: Ledger
    toggle_org: Ledger
    mongo: pymongo.MongoClient[dict[str, Any]]

    async def wave(self, *, must_succeed: set[str]) -> list[Answer]:
        """Writes (a save and a toggle, to two orgs), then reads of what they wrote."""
        target = not (self.toggle_org.toggles[-1][0] if self.toggle_org.toggles else False)
        writes = await asyncio.gather(
            put_config(self.client, self.config_org), set_enabled(self.client, self.toggle_org, target)
        )
        (config_read, n), (enabled_read, enabled) = await asyncio.gather(
            read_config(self.client, self.config_org), read_enabled(self.client, self.toggle_org)
        )
        answers = [*writes, config_read, enabled_read]
        for a in answers:
            assert a.seconds < ANSWER_BOUND, a  # generous bound, see ANSWER_BOUND
            assert a.status in (200, 503), a  # a dependency problem is a 503, never a 409 or 500
            assert a.what not in must_succeed or a.status == 200, a
        # a read that answered is never older than an acknowledged write
        if n is not None:
            assert n in Ledger.possible(self.config_org.configs, 0), (n, self.config_org.configs)
        if enabled is not None:
            assert enabled in Ledger.possible(self.toggle_org.toggles, False), (enabled, self.toggle_org.toggles)
        return answers

    async def writes_come_back(self) -> float:
        """Seconds from now until a save and a toggle were both acknowledged again."""
        started = time.monotonic()
        attempts: list[Callable[[], Awaitable[Answer]]] = [
            lambda: put_config(self.client, self.config_org),
            lambda: set_enabled(self.client, self.toggle_org, not self.toggle_org.toggles[-1][0]),
        ]
        for attempt in attempts:
            while (await attempt()).status != 200:
                assert time.monotonic() - started < 30, "writes did not come back"
                await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def stored_secret(self, org: str) -> dict[str, str]:
        stack = self.stack
        settings = load_settings(stack.config, env=stack.env, data_dir=stack.serve.data_dir)
        raw = connect_etcd(*settings.etcd.endpoints, namespace=stack.etcd_namespace)
        try:
            store = EncryptedKeyValueStore(raw, Aead(load_keyring(settings, stack.env)))
            found = await store.get(secret_path("confluence", org))
        finally:
            await raw.aclose()
        assert found is not None
        return dict(json.loads(found.value))

    async def nothing_half_written_nothing_lost(self) -> None:
        """After a recovery (whose writes were acknowledged): the stored configuration is the last
        acknowledged save, its secret belongs to the same save, and the connector's state is the
        last acknowledged toggle."""
        _, n = await read_config(self.client, self.config_org)
        last_acked = max(i for i, ok in self.config_org.configs if ok)
        assert n == last_acked, (n, self.config_org.configs)
        assert await self.stored_secret(self.config_org.org) == {"auth.apiToken": f"token-{n}"}
        _, enabled = await read_enabled(self.client, self.toggle_org)
        doc = self.mongo[self.stack.mongo_database]["connectorsConfig"].find_one({"org_id": self.toggle_org.org})
        assert enabled == [t for t, ok in self.toggle_org.toggles if ok][-1], (
            self.toggle_org.toggles,
            doc and (doc["is_enabled"], doc["version"]),
        )

    def unpublished(self) -> int:
        outbox = self.mongo[self.stack.mongo_database]["outbox"]
        return outbox.count_documents({"published": False})

    async def events_flow(self, within: float = 30.0) -> None:
        """Wait until the relay has published every stored event."""
        deadline = time.monotonic() + within
        while self.unpublished():
            assert time.monotonic() < deadline, f"{self.unpublished()} events still unpublished"
            await asyncio.sleep(0.1)


@pytest.fixture
async def world(stack: Stack) -> AsyncIterator[World]:
    assert stack.serve.proc is not None and stack.serve.proc.poll() is None, "serve died"
    async with httpx.AsyncClient(base_url=stack.serve.url, timeout=60) as client:
        config_org = Ledger(f"cfg-{uuid.uuid4().hex[:8]}", {})
        toggle_org = Ledger(f"tgl-{uuid.uuid4().hex[:8]}", {})
        for ledger in (config_org, toggle_org):
            ledger.headers = headers_for(stack, ledger.org)
            assert (await put_config(client, ledger)).status == 200
        assert (await set_enabled(client, toggle_org, True)).status == 200
        # warm the cache, so a stale value would be there to be served
        await read_config(client, config_org)
        await read_enabled(client, toggle_org)
        mongo: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            stack.mongo_url, serverSelectionTimeoutMS=20_000
        )
        try:
            yield World(stack, client, config_org, toggle_org, mongo)
        finally:
            mongo.close()


async def ride_out(world: World, name: str, *, must_succeed: set[str], check_during: Any = None) -> None:
    server = world.stack.servers[name]
    for fault in FAULTS:
        begin(server, fault)
        try:
            await world.wave(must_succeed=must_succeed)
            await world.wave(must_succeed=must_succeed)  # a second one: the first may have tripped things
            if check_during is not None:
                await check_during()
        finally:
            end(server, fault)
        back = await world.writes_come_back()
        assert back < RECOVERY_BOUND, f"{name} {fault}: writes back after {back:.1f}s"  # see RECOVERY_BOUND
        await world.nothing_half_written_nothing_lost()


async def test_mongodb_stopped_killed_and_frozen(world: World) -> None:
    await ride_out(world, "mongo", must_succeed=set())
    await world.events_flow()


async def test_etcd_stopped_killed_and_frozen(world: World) -> None:
    # a toggle and the reads need no secret; a save stores one
    await ride_out(world, "etcd", must_succeed={"toggle", "GET config", "GET active"})
    await world.events_flow()


async def test_redis_stopped_killed_and_frozen(world: World) -> None:
    # Redis holds the read cache and the locks: writes and reads go on, and so do the events
    await ride_out(
        world,
        "redis",
        must_succeed={"PUT config", "toggle", "GET config", "GET active"},
        check_during=world.events_flow,
    )


async def test_kafka_stopped_killed_and_frozen(world: World) -> None:
    await ride_out(world, "kafka", must_succeed={"PUT config", "toggle", "GET config", "GET active"})
    await world.events_flow()
