"""A password planted in every setting that can hold one never shows: not in the repr of any
object the composition root builds, not in a log line, not in a start-up error."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from adapters.crypto import Aead, Keyring
from adapters.etcd import connect_etcd
from adapters.factories.etcd import EtcdBackend
from adapters.factories.mongo import MongoBackend
from adapters.factories.redis import RedisBackend
from adapters.http.backend_client import HttpxBackendClient
from adapters.kafka import KafkaEventPublisher
from adapters.memory import MemoryKeyValueStore
from adapters.mongo import MongoDatabase, make_client
from adapters.read_cache import ReadThroughCache
from adapters.redis import connect_redis
from adapters.system import SystemClock
from entrypoints.bootstrap import build_container
from entrypoints.infrastructure import Infrastructure, connection_key, open_infrastructure
from entrypoints.settings import Settings, SettingsError, load_settings
from tests.servers import collect_driver_sockets, free_port

PW = "PLANTED-PW-4711"
OURS = ("adapters", "entrypoints", "connector_core")


def planted(tmp_path: Path, port: int = 1, **choices: str) -> Settings:
    """Settings whose every credential is ``PW``, pointing at ``port`` (nothing listens on 1)."""
    return load_settings(
        env={},
        data_dir=tmp_path,
        mongo_url=f"mongodb://app:{PW}@127.0.0.1:{port}/?replicaSet=rs0",
        mongo_timeout_seconds=0.3,
        etcd_endpoint=f"127.0.0.1:{port}",
        etcd_user="app",
        etcd_password=PW,
        etcd_timeout_seconds=0.3,
        redis_url=f"redis://:{PW}@127.0.0.1:{port}/0",
        kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_client_config={"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.password": PW},
        backend_url=f"https://svc:{PW}@backend.internal.example/",
        start_up_timeout_seconds=0.5,  # nothing will answer: no need to wait the default 15 s
        **choices,
    )


ENV = {"CM_MASTER_KEY": PW + "-master", "CM_JWT_SECRET": PW + "-jwt", "CM_SCOPED_JWT_SECRET": PW + "-scoped"}


def _children(obj: object) -> Iterator[object]:
    if isinstance(obj, dict):
        yield from obj.values()
    elif isinstance(obj, list | tuple | set | frozenset):
        yield from obj
    elif attrs.has(cls := type(obj)):
        for a in attrs.fields(cls):
            yield getattr(obj, a.name, None)
    else:
        yield from getattr(obj, "__dict__", {}).values()
        for slot in getattr(type(obj), "__slots__", ()):
            yield getattr(obj, slot, None)


def reachable(root: object) -> Iterator[object]:
    """Every object of this project reachable from ``root``, and the objects they hold (a
    client of a driver is shown by whoever prints its holder, so its repr counts too)."""
    seen: set[int] = set()
    todo: list[tuple[object, bool]] = [(root, True)]
    while todo:
        obj, ours = todo.pop()
        if id(obj) in seen or obj is None or isinstance(obj, str | bytes | int | float | bool | type):
            continue
        seen.add(id(obj))
        if callable(obj) and not hasattr(obj, "__dict__") and not attrs.has(type(obj)):
            continue  # bound methods, builtins
        container = isinstance(obj, dict | list | tuple | set | frozenset)
        mine = type(obj).__module__.split(".")[0] in OURS
        if not container:
            yield obj
        if (container and ours) or mine:
            todo.extend((child, mine or ours) for child in _children(obj))


async def test_no_repr_of_a_built_container_shows_a_credential(tmp_path: Path) -> None:
    settings = planted(tmp_path, storage="mongo", secrets="memory", cache="redis", locks="redis", events="kafka")
    clock = SystemClock()
    aead = Aead(Keyring.from_master_secret(ENV["CM_MASTER_KEY"]))
    # the real adapters on real (lazy) clients: nothing connects until used
    mongo = MongoBackend(
        MongoDatabase(make_client(settings.mongo_url, timeout_seconds=0.3), "db", sealer=aead, clock=clock)
    )
    redis = RedisBackend(connect_redis(settings.redis_url))
    etcd = EtcdBackend(
        connect_etcd(("127.0.0.1", 1), user="app", password=PW, timeout=0.3, namespace="/ns"), namespace="/ns"
    )
    kafka = KafkaEventPublisher(settings.kafka.bootstrap, client_config=dict(settings.kafka_client_config))
    assert settings.backend_url is not None
    backend = HttpxBackendClient(settings.backend_url)
    infra = Infrastructure(
        storage=mongo.storage(clock),
        secrets=MemoryKeyValueStore(),
        lock=redis.lock(clock),
        aead=aead,
        cache=ReadThroughCache(redis.cache()),
        publisher=kafka,
        backend=backend,
        etcd=etcd,
        closers=[mongo.aclose, redis.aclose, etcd.aclose, kafka.aclose, backend.aclose],
        key=connection_key(settings),
    )
    container = await build_container(settings, env=ENV, infrastructure=infra)
    try:
        shown = [(type(obj).__qualname__, repr(obj)) for obj in reachable(container)]
        shown += [(type(obj).__qualname__, str(obj)) for obj in reachable(container)]
        assert len(shown) > 50  # the walk did reach the adapters
        assert [(name, text) for name, text in shown if PW in text] == []
        sections = [settings.mongo, settings.etcd, settings.redis, settings.kafka, settings.backend, settings]
        assert [repr(s) for s in sections if PW in repr(s)] == []
    finally:
        await container.aclose()


@pytest.mark.parametrize(
    ("choices", "setting"),
    [
        ({"storage": "mongo"}, "mongo_url"),
        ({"secrets": "etcd"}, "etcd_endpoint"),
        ({"cache": "redis"}, "redis_url"),
        ({"events": "kafka"}, "kafka_bootstrap"),
    ],
    ids=["mongo", "etcd", "redis", "kafka"],
)
async def test_a_failed_start_names_the_setting_and_no_credential(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, choices: dict[str, str], setting: str
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = planted(tmp_path, port=free_port(), **choices)
    aead = Aead(Keyring.from_master_secret(ENV["CM_MASTER_KEY"]))
    with pytest.raises(SettingsError) as failed:
        await open_infrastructure(settings, aead, SystemClock())
    await collect_driver_sockets()
    assert failed.value.message.startswith(f"{setting}: cannot reach ")
    said = [failed.value.message, str(failed.value), repr(failed.value), *failed.value.errors[0].values()]
    said += [r.getMessage() for r in caplog.records]
    said += [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert [line for line in said if PW in line] == []
