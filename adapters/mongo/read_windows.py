"""The refresher's ordered reads on MongoDB, sent as windows of their date range.

Each of these reads asks for the first ``limit`` records whose date (``refresh_due_at``,
``expires_at``, ``refresh_warn_at``) is before a moment, oldest first, on an index whose last
fields are that date and ``_id``. mongod walks the index in that order and stops at the limit.
SecantusDB, the server the tests and benchmarks run, reads every document the index range
matches and sorts and limits them afterwards: one such find costs as many documents as are due
(10,000 at 1,000,000 records with 1 % due: 300 times the cost per record of a small store).

So each read goes as pieces of its range, oldest first, each matching few documents:

1. below the *floor*, the oldest date the last pass of this read found: only records written
   since with an earlier date (few); bounded below too (see :meth:`ReadWindows.first`);
2. then windows upward from the floor, the first two as wide as the last pass found right (the
   first often holds only what is left of the records the last pass found, refreshed since), each
   next twice as wide, until ``limit`` records are found or the moment is reached.

The answer is the one find's answer: the pieces are disjoint and ascending, and each gives its
first records in the find's order, so their concatenation, cut at ``limit``, is the find's first
``limit``. The floor and the width only decide what that costs, so a wrong or stale floor (a
record written below it, a clock that went back, another process refreshing meanwhile) costs
documents read, never a record missed. A process's first pass has no floor: it sends the whole
range once (the one find), and learns the floor from it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from attrs import define

T = TypeVar("T")

#: the first window of a read that has no measure of its records' density yet
FIRST_WIDTH = timedelta(minutes=1)
#: the narrowest window (stored dates are whole milliseconds)
NARROWEST = timedelta(milliseconds=1)
#: the widest first window: a read whose records are sparse reaches the moment by doubling
WIDEST = timedelta(days=1)
#: how much wider than the span of the last pass's records the next first window is
MARGIN = 1.1


@define
class _Reach:
    """What one read learnt from its last pass: where its oldest record was, how wide a window
    held about ``limit`` of its records."""

    floor: datetime | None = None
    width: timedelta = FIRST_WIDTH


#: one piece of a read: the date range (``$gte``/``$lt``), and how many records to return at most
Fetch = Callable[[dict[str, Any], int], Awaitable[Sequence[T]]]


class ReadWindows:
    """The floors and widths of a process's ordered reads (one :class:`MongoDatabase` holds one);
    each read is named by a key (say, the read and its status)."""

    def __init__(self) -> None:
        self._reach: dict[str, _Reach] = {}

    def floor(self, key: str) -> datetime | None:
        """The floor of ``key``'s next pass (None: its next pass sends the whole range)."""
        reach = self._reach.get(key)
        return None if reach is None else reach.floor

    async def first(
        self,
        key: str,
        lowest: datetime,
        before: datetime,
        limit: int,
        fetch: Fetch[T],
        when: Callable[[T], datetime | None],
        ident: Callable[[T], object],
    ) -> list[T]:
        """The first ``limit`` records dated from ``lowest`` to before ``before`` (exclusive) in
        the read's order: ``fetch(date_range, n)`` answers the first ``n`` of one piece; ``when``
        is a record's date, ``ident`` its identity.

        Every piece is bounded below, the first by ``lowest``: SecantusDB starts an index range
        with no lower bound at null, and would read every record with no date (a token that never
        expires, one with no warning) to return none of them."""
        if limit <= 0:
            return []
        reach = self._reach.setdefault(key, _Reach())
        start = reach.floor
        if start is None:
            found = list(await fetch({"$gte": lowest, "$lt": before}, limit))
        else:
            start = min(start, before)
            found = list(await fetch({"$gte": lowest, "$lt": start}, limit))
            found += await self._windows(reach, start, before, limit - len(found), fetch)
            # the pieces are separate reads: a record another process moved to a later date
            # between two of them (still before the moment) is read twice
            found = _once_each(found, ident)
        oldest = when(found[0]) if found else before
        self._learn(reach, start, before, found, limit, when)
        reach.floor = oldest
        return found

    async def _windows(self, reach: _Reach, start: datetime, before: datetime, wanted: int, fetch: Fetch[T]) -> list[T]:
        found: list[T] = []
        low, width, grow = start, reach.width, 1
        while len(found) < wanted and low < before:
            high = min(low + width, before)
            found += await fetch({"$gte": low, "$lt": high}, wanted - len(found))
            # the second window as wide as the first: the first often held the records the last
            # pass found, refreshed since (gone); the next ones are as dense as those were
            low, width, grow = high, width * grow, 2
        return found

    @staticmethod
    def _learn(
        reach: _Reach,
        start: datetime | None,
        before: datetime,
        found: list[T],
        limit: int,
        when: Callable[[T], datetime | None],
    ) -> None:
        """The next pass's first window: as wide as this pass's ``limit`` records spanned (a
        little more), or, when fewer were due, wide enough to reach the moment at once."""
        first = when(found[0]) if found else None
        if len(found) >= limit:
            last = when(found[-1])
            if first is None or last is None:
                return
            span = (last - first) * MARGIN
        else:
            span = before - (first or start or before)
            span = max(span, reach.width)
        reach.width = min(max(span, NARROWEST), WIDEST)


def _once_each(records: list[T], ident: Callable[[T], object]) -> list[T]:
    seen: set[object] = set()
    out = []
    for record in records:
        if ident(record) not in seen:
            seen.add(ident(record))
            out.append(record)
    return out
