"""Event outbox port: events stored with the state change that caused them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Protocol, overload

from attrs import frozen

from connector_core.model.events import DomainEvent

#: an event as the broker's consumers receive it: (topic, key, value, headers), the headers in
#: the order they are sent (a dict: no tuple per header, and no object the garbage collector
#: tracks, for each of the thousands of records a relay batch holds)
WireRecord = tuple[str, bytes, bytes, dict[str, bytes]]


class OutboxMessage:
    """A stored event. ``seq`` identifies it in its store (what :meth:`OutboxReader.mark_published`
    takes); the order that matters is per connector (partition key), see :meth:`OutboxReader.pending`.

    A store may hand over the event still encoded (``decode``, called at most once, on first
    use of :attr:`event`) together with ``wire``, the record it encoded for the broker when it
    wrote the event, so the relay publishes without decoding and encoding every event again.
    ``wire`` is the default wire profile's record, kept only for events whose record is the same
    in every profile; None: the publisher encodes the event."""

    __slots__ = ("_decode", "_event", "seq", "wire")

    def __init__(
        self,
        seq: int,
        event: DomainEvent | None = None,
        *,
        decode: Callable[[], DomainEvent] | None = None,
        wire: WireRecord | None = None,
    ) -> None:
        if (event is None) == (decode is None):
            raise ValueError("an outbox message needs its event or a way to decode it, not both")
        self.seq = seq
        self._event = event
        self._decode = decode
        self.wire = wire

    @property
    def event(self) -> DomainEvent:
        if self._event is None:
            assert self._decode is not None
            self._event, self._decode = self._decode(), None
        return self._event

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OutboxMessage):
            return NotImplemented
        return (self.seq, self.event) == (other.seq, other.event)

    def __hash__(self) -> int:
        return hash((self.seq, self.event))

    def __repr__(self) -> str:
        return f"OutboxMessage(seq={self.seq!r}, event={self.event!r})"


class OutboxBatch(Sequence[OutboxMessage]):
    """Messages as a store may answer :meth:`OutboxReader.pending`: their seqs and broker records
    (``wires``: each message's ``wire``) in lists of their own, and each message made only when
    it is asked for (``make(index)``, once). A relay publishes and marks a batch of thousands
    from the two lists (:func:`seqs_of`, :func:`wires_of`), without an object per message.
    Equal to any sequence of the same messages."""

    __slots__ = ("_made", "_make", "seqs", "wires")

    def __init__(
        self, seqs: Sequence[int], wires: Sequence[WireRecord | None], make: Callable[[int], OutboxMessage]
    ) -> None:
        if len(seqs) != len(wires):
            raise ValueError("a batch needs one record (or None) per seq")
        self.seqs, self.wires, self._make = seqs, wires, make
        self._made: dict[int, OutboxMessage] = {}

    @classmethod
    def joined(cls, first: Sequence[OutboxMessage], second: Sequence[OutboxMessage]) -> OutboxBatch:
        """``first`` then ``second``, neither made into messages (what the relay passes as
        ``beyond``)."""
        cut = len(first)

        def make(index: int) -> OutboxMessage:
            return first[index] if index < cut else second[index - cut]

        return cls([*seqs_of(first), *seqs_of(second)], [*wires_of(first), *wires_of(second)], make)

    def __len__(self) -> int:
        return len(self.seqs)

    @overload
    def __getitem__(self, index: int) -> OutboxMessage: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[OutboxMessage]: ...

    def __getitem__(self, index: int | slice) -> OutboxMessage | Sequence[OutboxMessage]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self.seqs)))]
        size = len(self.seqs)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("batch index out of range")
        made = self._made.get(index)
        if made is None:
            made = self._made[index] = self._make(index)
        return made

    def __iter__(self) -> Iterator[OutboxMessage]:
        return (self[i] for i in range(len(self.seqs)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    def __repr__(self) -> str:
        return f"OutboxBatch(seqs={list(self.seqs)!r})"


def seqs_of(messages: Sequence[OutboxMessage]) -> Sequence[int]:
    """The seqs of ``messages`` in order (an :class:`OutboxBatch`'s own list: do not change it)."""
    return messages.seqs if isinstance(messages, OutboxBatch) else [m.seq for m in messages]


def wires_of(messages: Sequence[OutboxMessage]) -> Sequence[WireRecord | None]:
    """The ``wire`` of each of ``messages`` in order (an :class:`OutboxBatch`'s own list)."""
    return messages.wires if isinstance(messages, OutboxBatch) else [m.wire for m in messages]


@frozen
class OutboxBacklog:
    """The events not yet published: how many, and when the oldest of them occurred."""

    pending: int = 0
    #: the ``occurred_at`` of the oldest unpublished event; None when nothing waits
    oldest_occurred_at: datetime | None = None


class Outbox(Protocol):
    async def add(self, events: Sequence[DomainEvent]) -> None:
        """Stage events in the current unit of work; stored only if it commits."""
        ...


class OutboxReader(Protocol):
    async def pending(self, limit: int, *, beyond: Sequence[OutboxMessage] = ()) -> Sequence[OutboxMessage]:
        """Unpublished messages of committed units of work, at most ``limit``: for every connector
        (partition key), a gap-free run of its oldest unpublished events in commit order, so a
        batch never holds an event of a connector without every earlier pending one.

        ``beyond``: answers of this method not yet marked published, one after the other in the
        order they came (the batch the relay is publishing, after the one it is still marking):
        the answer is then what it would be once those are marked published, so the next batch
        is read while the broker takes this one. It holds none of ``beyond``."""
        ...

    async def mark_published(self, seqs: Sequence[int]) -> None:
        """Mark messages published (idempotent)."""
        ...

    async def backlog(self) -> OutboxBacklog:
        """How many committed messages are unpublished and the earliest ``occurred_at`` among
        them, from the pending index (cheap enough for every metrics scrape)."""
        ...

    async def set_aside(self, reasons: Mapping[int, str]) -> None:
        """Take messages the broker refused for good (seq → reason) out of the pending ones, for
        good (idempotent): they are kept with their reason, never offered by :meth:`pending`
        again, and not pruned as published ones are."""
        ...

    async def set_aside_count(self) -> int:
        """How many stored messages were set aside (a gauge for operators)."""
        ...

    async def recent(self, limit: int, *, org_id: str | None = None) -> Sequence[OutboxMessage]:
        """The newest ``limit`` messages (of ``org_id`` only, when given), published or not,
        oldest first (for inspection and the events route)."""
        ...

    async def after(self, event_id: str, limit: int, *, org_id: str | None = None) -> Sequence[OutboxMessage]:
        """Up to ``limit`` messages after the one whose event has ``event_id`` (of ``org_id``
        only, when given), published or not, in the order of :meth:`recent` (oldest first; one
        connector's always in commit order), so paging with the last id returned reads on.
        :class:`UnknownEvent` when no stored message has that event id (pruned, never stored,
        or another org's when ``org_id`` is given)."""
        ...

    async def resume_point(
        self, page: Sequence[OutboxMessage], *, after: str | None, org_id: str | None = None
    ) -> str | None:
        """Where a reader goes on from after ``page`` (just read with :meth:`recent`, or with
        :meth:`after` from ``after``; ``org_id`` as given there): the event id to pass to
        :meth:`after` next, chosen so that no event is ever skipped, whatever order writers commit
        in. Where the order is commit order, the last message of ``page``. Where it is a writer's
        clock, the last message no commit still under way can precede: messages after it are read
        again (a reader dedupes on event id). ``after`` when there is no such message."""
        ...

    async def prune(self, keep: int, *, published_only: bool) -> int:
        """Delete all but the newest ``keep`` messages (only published ones when
        ``published_only``: an unpublished or set-aside event is never lost); returns how many went."""
        ...
