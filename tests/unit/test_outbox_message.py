"""An outbox message handed over still encoded decodes its event once, on first use."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector_core.model.events import DomainEvent, RealTimeUpdatesChanged
from connector_core.ports.outbox import OutboxBatch, OutboxMessage, WireRecord, seqs_of, wires_of


def _event() -> RealTimeUpdatesChanged:
    return RealTimeUpdatesChanged(
        event_id="e1",
        org_id="o",
        connector_key="jira",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        enabled=True,
        topic_name="t",
    )


def test_the_event_is_decoded_on_first_use_only() -> None:
    calls: list[int] = []

    def decode() -> DomainEvent:
        calls.append(1)
        return _event()

    message = OutboxMessage(7, decode=decode)
    assert calls == []
    assert message.event == _event()
    assert message.event == _event()
    assert calls == [1]
    assert message == OutboxMessage(7, _event())
    assert message != OutboxMessage(8, _event())


def test_a_message_needs_exactly_one_of_its_event_or_a_decoder() -> None:
    with pytest.raises(ValueError, match="not both"):
        OutboxMessage(1)
    with pytest.raises(ValueError, match="not both"):
        OutboxMessage(1, _event(), decode=_event)


def _batch(seqs: list[int], made: list[int]) -> OutboxBatch:
    wires: list[WireRecord | None] = [("t", b"k", str(s).encode(), {"eventId": b"e1"}) for s in seqs]

    def make(index: int) -> OutboxMessage:
        made.append(index)
        return OutboxMessage(seqs[index], _event(), wire=wires[index])

    return OutboxBatch(seqs, wires, make)


def test_a_batch_makes_a_message_only_when_asked_for_and_once() -> None:
    made: list[int] = []
    batch = _batch([3, 4, 9], made)
    assert len(batch) == 3 and seqs_of(batch) == [3, 4, 9] and made == []
    assert [w[2] for w in wires_of(batch) if w is not None] == [b"3", b"4", b"9"]
    assert batch[-1].seq == 9 and batch[2] is batch[-1] and made == [2]
    assert [m.seq for m in batch[:2]] == [3, 4] and made == [2, 0, 1]
    assert batch == [OutboxMessage(s, _event()) for s in (3, 4, 9)] and made == [2, 0, 1]
    assert batch != [OutboxMessage(3, _event())]
    with pytest.raises(IndexError):
        batch[3]


def test_batches_and_lists_joined_keep_their_order_without_making_messages() -> None:
    made: list[int] = []
    joined = OutboxBatch.joined(_batch([1, 2], made), [OutboxMessage(5, _event())])
    assert seqs_of(joined) == [1, 2, 5] and made == []
    assert wires_of(joined)[2] is None
    assert [m.seq for m in joined] == [1, 2, 5] and made == [0, 1]
    assert seqs_of(OutboxBatch.joined((), joined)) == [1, 2, 5]
