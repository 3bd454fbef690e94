"""Shared test helpers."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import settings as hypothesis_settings

from adapters.system import ManualClock
from connector_core.catalog import Catalog, load_default_catalog
from tests import servers
from tests.fakes.oauth_provider import FakeOAuthProvider
from tests.servers import ServerProcess

# Hypothesis: CI runs the same examples every time (a red build is reproducible from its log, and
# a green one is not luck) with no time limit per example on a shared machine; elsewhere the
# examples are random, so new ones keep being tried. CI=true selects the CI profile.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True, database=None)
hypothesis_settings.register_profile("dev", print_blob=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")


class CountingIds:
    """Deterministic ids: easy to read in failures, unique per test."""

    def __init__(self, prefix: str = "id") -> None:
        self._n = itertools.count(1)
        self._prefix = prefix

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._n):06d}"

    def secret_token(self, nbytes: int = 32) -> str:
        return f"tok{next(self._n):06d}" + "x" * nbytes


class SeededRandom:
    def __init__(self, seed: int = 7) -> None:
        self._rng = random.Random(seed)

    def random(self) -> float:
        return self._rng.random()


@pytest.fixture
def catalog() -> Catalog:
    return load_default_catalog()


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeOAuthProvider]:
    """A fake OAuth provider over real HTTP, one per test module (register a client per test)."""
    with FakeOAuthProvider() as provider:
        yield provider


@pytest.fixture
def clock() -> ManualClock:
    """Now (whole seconds), moving only when told."""
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def t0() -> datetime:
    return datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


# -- real servers (started on first use, one per session) ---------------------------------

_SERVERS: dict[str, ServerProcess] = {}


def _server(name: str, factory: Callable[[], ServerProcess]) -> ServerProcess:
    if name not in _SERVERS:
        proc = factory()
        proc.start()
        _SERVERS[name] = proc
    return _SERVERS[name]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for proc in _SERVERS.values():
        proc.close()
    _SERVERS.clear()


@pytest.fixture(scope="session")
def mongo_server() -> ServerProcess:
    """The MongoDB-compatible server (SecantusDB)."""
    return _server("mongo", servers.mongo)


@pytest.fixture(scope="session")
def mongo_url(mongo_server: ServerProcess) -> str:
    return os.environ.get("CM_TEST_MONGO_URL") or f"mongodb://127.0.0.1:{mongo_server.port}/?directConnection=true"


@pytest.fixture(scope="session")
def kafka_server() -> ServerProcess:
    return _server("kafka", servers.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_server: ServerProcess) -> str:
    return f"127.0.0.1:{kafka_server.port}"


@pytest.fixture(scope="session")
def etcd_server() -> ServerProcess:
    return _server("etcd", servers.etcd)


@pytest.fixture(scope="session")
def etcd_endpoint(etcd_server: ServerProcess) -> tuple[str, int]:
    return ("127.0.0.1", etcd_server.port)


@pytest.fixture(scope="session")
def redis_server() -> ServerProcess:
    return _server("redis", servers.redis)


@pytest.fixture(scope="session")
def redis_url(redis_server: ServerProcess) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/0"
