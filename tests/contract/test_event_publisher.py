"""Contract: the event publisher (what consumers receive: topic, key, headers, value; order per key).

Runs against every backend module that provides ``publisher`` (Kafka) and the in-memory
publisher, defined here. Each backend says how to read back what it published.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from attrs import frozen

from adapters.event_wire import envelope, kafka_record
from adapters.memory import MemoryEventPublisher
from connector_core.errors import EventsRejected
from connector_core.model.events import (
    ENTITY_TOPIC,
    TOKEN_TOPIC,
    AppDisabled,
    AppEnabled,
    ConnectorConfigured,
    DomainEvent,
    SyncAction,
    TokenEvent,
    TokenEventType,
)
from connector_core.ports.event_publisher import EventPublisher
from connector_core.ports.outbox import OutboxMessage
from tests.contract.backends import Env, params
from tests.contract.backends import kafka as kafka_backend


@frozen
class Delivered:
    """One record as a consumer sees it."""

    topic: str
    key: bytes | None
    headers: dict[str, bytes]
    value: bytes | None

    @property
    def event_id(self) -> str:
        return self.headers["eventId"].decode()


@frozen
class PublisherUnderTest:
    name: str
    publisher: EventPublisher
    #: everything delivered with one of these event ids, duplicates included, per-key in order;
    #: with ``expected``, returns once those arrived (the others are kept if they came too)
    read_back: Callable[..., Awaitable[list[Delivered]]]


@contextlib.asynccontextmanager
async def _memory_publisher(env: Env) -> AsyncIterator[EventPublisher]:
    yield MemoryEventPublisher()


#: The in-memory publisher, as if it were a module of ``tests/contract/backends``.
memory_backend = SimpleNamespace(MARK="memory", publisher=_memory_publisher)


def _reader(module: Any, publisher: EventPublisher, env: Env) -> Callable[..., Awaitable[list[Delivered]]]:
    if isinstance(publisher, MemoryEventPublisher):

        async def read_memory(ids: Sequence[str], expected: Sequence[str] | None = None) -> list[Delivered]:
            wanted = set(ids)
            out = []
            for m in publisher.published:
                if m.event.event_id in wanted:
                    topic, key, value, headers = kafka_record(m)
                    out.append(Delivered(topic, key, dict(headers), value))
            return out

        return read_memory
    if module.MARK == "kafka":
        bootstrap = env.request.getfixturevalue("kafka_bootstrap")

        async def read_kafka(ids: Sequence[str], expected: Sequence[str] | None = None) -> list[Delivered]:
            got = await kafka_backend.read_back(bootstrap, ids, expected=expected)
            return [Delivered(r.topic, r.key, r.headers, r.value) for r in got]

        return read_kafka
    raise NotImplementedError(f"no reader for backend {module.MARK}")


@pytest.fixture(
    params=[*params("publisher"), pytest.param(memory_backend, marks=pytest.mark.memory, id="memory")],
)
async def event_publisher(request: pytest.FixtureRequest, env: Env) -> AsyncIterator[PublisherUnderTest]:
    async with request.param.publisher(env) as pub:
        yield PublisherUnderTest(request.param.MARK, pub, _reader(request.param, pub, env))


# -- events ------------------------------------------------------------------------------------


class Events:
    """Events of a unique org, so tests sharing a broker never see each other's."""

    def __init__(self) -> None:
        self.org = f"org-{uuid.uuid4().hex[:10]}"
        self.seq = 0
        self.t0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)

    def _common(self, connector: str) -> dict[str, Any]:
        self.seq += 1
        return {
            "event_id": f"{self.org}-{self.seq:05d}",
            "occurred_at": self.t0 + timedelta(milliseconds=self.seq * 7),
            "org_id": self.org,
            "connector_key": connector,
        }

    def enabled(self, connector: str = "confluence") -> OutboxMessage:
        event = AppEnabled(
            **self._common(connector),
            app_group="Atlassian",
            app_group_id="grp-1",
            apps=("CONFLUENCE", "JIRA"),
            sync_action=SyncAction.IMMEDIATE,
            credentials_route="/api/v1/connectors/confluence/config",
        )
        return OutboxMessage(self.seq, event)

    def disabled(self, connector: str = "confluence") -> OutboxMessage:
        event = AppDisabled(
            **self._common(connector), app_group="Atlassian", app_group_id="grp-1", apps=("CONFLUENCE",)
        )
        return OutboxMessage(self.seq, event)

    def configured(self, connector: str = "confluence") -> OutboxMessage:
        event = ConnectorConfigured(**self._common(connector), changed_fields=("auth.clientId",))
        return OutboxMessage(self.seq, event)

    def oversized(self, connector: str = "confluence") -> OutboxMessage:
        """An event whose record is over 1 MB: no Kafka producer (nor broker, by default) takes it."""
        names = tuple(f"filters.f{i:07d}" for i in range(60_000))
        event = ConnectorConfigured(**self._common(connector), changed_fields=names)
        return OutboxMessage(self.seq, event)

    def token(self, connector: str = "googleWorkspace") -> OutboxMessage:
        event = TokenEvent(
            **self._common(connector),
            token_event_type=TokenEventType.CREATED,
            token_reference_id="tok-ref-1",
            service_type="GOOGLE_DRIVE",
            account_id="acct-1",
        )
        return OutboxMessage(self.seq, event)

    def mixed(self, count: int, connectors: Sequence[str]) -> list[OutboxMessage]:
        makers: list[Callable[[str], OutboxMessage]] = [self.enabled, self.disabled, self.configured, self.token]
        return [makers[i % len(makers)](connectors[i % len(connectors)]) for i in range(count)]


Stream = tuple[str, bytes | None]  # (topic, key): the unit whose order Kafka keeps


def by_key_first_occurrences(records: Sequence[Delivered]) -> dict[Stream, list[str]]:
    order: dict[Stream, list[str]] = {}
    for r in records:
        ids = order.setdefault((r.topic, r.key), [])
        if r.event_id not in ids:
            ids.append(r.event_id)
    return order


def expected_by_key(messages: Sequence[OutboxMessage]) -> dict[Stream, list[str]]:
    order: dict[Stream, list[str]] = {}
    for m in messages:
        order.setdefault((m.event.topic, m.event.partition_key.encode()), []).append(m.event.event_id)
    return order


# -- the contract ------------------------------------------------------------------------------


async def test_published_events_read_back_as_consumers_expect(event_publisher: PublisherUnderTest) -> None:
    ev = Events()
    messages = [ev.enabled(), ev.disabled(), ev.configured(), ev.token()]
    await event_publisher.publisher.publish(messages)

    delivered = await event_publisher.read_back([m.event.event_id for m in messages])
    by_id = {d.event_id: d for d in delivered}
    assert set(by_id) == {m.event.event_id for m in messages}
    for m in messages:
        event: DomainEvent = m.event
        got = by_id[event.event_id]
        assert got.topic == (TOKEN_TOPIC if isinstance(event, TokenEvent) else ENTITY_TOPIC)
        assert got.topic == event.topic
        assert got.key == f"{ev.org}:{event.connector_key}".encode()
        ms = int(event.occurred_at.timestamp() * 1000)
        assert got.headers["eventType"] == event.event_type.encode()
        assert got.headers["timestamp"] == str(ms).encode()
        assert got.headers["eventId"] == event.event_id.encode()
        assert got.value is not None
        decoded = json.loads(got.value.decode("utf-8"))
        assert isinstance(decoded, dict), "the value is JSON encoded exactly once"
        assert decoded == envelope(m)
        assert decoded["timestamp"] == ms


async def test_order_per_key_is_kept(event_publisher: PublisherUnderTest) -> None:
    ev = Events()
    connectors = ("confluence", "jira", "googleWorkspace", "onedrive", "sharepointOnline")
    batches = [ev.mixed(17, connectors), ev.mixed(1, connectors), ev.mixed(40, connectors)]
    for batch in batches:
        await event_publisher.publisher.publish(batch)
    sent = [m for batch in batches for m in batch]

    delivered = await event_publisher.read_back([m.event.event_id for m in sent])
    assert {d.event_id for d in delivered} == {m.event.event_id for m in sent}
    assert by_key_first_occurrences(delivered) == expected_by_key(sent)


async def test_a_large_batch_is_delivered_whole(event_publisher: PublisherUnderTest) -> None:
    ev = Events()
    sent = ev.mixed(500, ("confluence", "jira"))
    await event_publisher.publisher.publish(sent)
    delivered = await event_publisher.read_back([m.event.event_id for m in sent])
    assert {d.event_id for d in delivered} == {m.event.event_id for m in sent}
    assert by_key_first_occurrences(delivered) == expected_by_key(sent)


async def test_publishing_nothing_is_a_no_op(event_publisher: PublisherUnderTest) -> None:
    await event_publisher.publisher.publish([])


async def test_check_is_true_when_the_broker_answers(event_publisher: PublisherUnderTest) -> None:
    assert await event_publisher.publisher.check() is True


async def test_a_message_refused_for_good_is_named_and_the_others_delivered(
    event_publisher: PublisherUnderTest,
) -> None:
    """Too large for the broker: sending it again cannot help, so it must not hold up the batch."""
    ev = Events()
    before = [ev.enabled(), ev.configured()]
    huge = ev.oversized()
    after = [ev.disabled(), ev.token()]
    sent = [*before, huge, *after]
    with pytest.raises(EventsRejected) as refused:
        await event_publisher.publisher.publish(sent)
    assert refused.value.rejected == {huge.seq: "MSG_SIZE_TOO_LARGE"}
    # the refused one is read back too if it came, but not waited for
    delivered = await event_publisher.read_back(
        [m.event.event_id for m in sent], expected=[m.event.event_id for m in [*before, *after]]
    )
    assert {d.event_id for d in delivered} == {m.event.event_id for m in [*before, *after]}
    assert by_key_first_occurrences(delivered) == expected_by_key([*before, *after])
    # the publisher is still usable
    more = [ev.enabled()]
    await event_publisher.publisher.publish(more)
    assert len(await event_publisher.read_back([more[0].event.event_id])) >= 1
