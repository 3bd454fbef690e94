"""An outbox message handed over still encoded decodes its event once, on first use."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector_core.model.events import DomainEvent, RealTimeUpdatesChanged
from connector_core.ports.outbox import OutboxMessage


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
