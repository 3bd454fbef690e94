"""The MongoDB adapter's windowed ordered reads (adapters.mongo.read_windows) against a model of
an index that, like SecantusDB, reads every document its range matches: each pass answers what
the one find would (the first ``limit`` in date order, whatever the floor and the writes since
the last pass), and once the read has a floor a pass reads about ``limit`` documents, not every
due one."""

from __future__ import annotations

import asyncio
import random
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.mongo.read_windows import ReadWindows

T0 = datetime(2026, 12, 4, tzinfo=UTC)
LOWEST = datetime(1970, 1, 1, tzinfo=UTC)
Record = tuple[datetime, str]


class Index:
    """Records ordered by (date, id); a range find reads every record in its range, then limits;
    one with no lower bound also reads every record with no date (``undated``), as SecantusDB's
    index ranges start at null."""

    def __init__(self, undated: int = 0) -> None:
        self.dates: dict[str, datetime] = {}  # by id: one record each
        self.undated = undated
        self.read = 0

    def write(self, record: Record) -> None:
        self.dates[record[1]] = record[0]

    @property
    def records(self) -> list[Record]:
        return [(date, ident) for ident, date in self.dates.items()]

    async def fetch(self, dates: dict[str, Any], n: int) -> list[Record]:
        low, high = dates.get("$gte"), dates["$lt"]
        matched = sorted(r for r in self.records if (low is None or r[0] >= low) and r[0] < high)
        self.read += len(matched) + (self.undated if low is None else 0)
        return matched[:n]

    def one_find(self, before: datetime, limit: int) -> list[Record]:
        return sorted(r for r in self.records if r[0] < before)[:limit]


def when(record: Record) -> datetime:
    return record[0]


def ident(record: Record) -> str:
    return record[1]


def first(windows: ReadWindows, index: Index, before: datetime, limit: int) -> list[Record]:
    return asyncio.run(windows.first("due", LOWEST, before, limit, index.fetch, when, ident))


offsets = st.integers(min_value=-7200_000, max_value=7200_000)  # ms around T0


@settings(max_examples=300, deadline=None)
@given(
    passes=st.lists(
        st.tuples(
            st.lists(st.tuples(offsets, st.integers(0, 50)), max_size=30),  # records written before it
            st.integers(min_value=-3600_000, max_value=3600_000),  # its moment
            st.integers(min_value=0, max_value=25),  # its limit
            st.integers(min_value=0, max_value=10),  # records refreshed after it (moved on)
        ),
        min_size=1,
        max_size=8,
    )
)
def test_every_pass_answers_what_the_one_find_would(passes: list[Any]) -> None:
    index, windows = Index(), ReadWindows()
    for written, moment, limit, refreshed in passes:
        for offset, n in written:
            index.write((T0 + timedelta(milliseconds=offset), f"r{n}"))
        before = T0 + timedelta(milliseconds=moment)
        got = first(windows, index, before, limit)
        assert got == index.one_find(before, limit)
        for record in got[:refreshed]:  # refreshed: due again later
            index.write((record[0] + timedelta(hours=2), record[1]))


def seeded(due: int, later: int, undated: int = 0) -> Index:
    """``due`` records due over the hour before T0, ``later`` due after it, ``undated`` never."""
    rng = random.Random(7)
    index = Index(undated)
    for i in range(due):
        index.write((T0 - timedelta(seconds=rng.random() * 3600), f"d{i}"))
    for i in range(later):
        index.write((T0 + timedelta(seconds=600 + rng.random() * 86400), f"l{i}"))
    return index


def test_after_its_first_pass_a_read_reads_about_limit_documents_not_every_due_one() -> None:
    index, windows = seeded(due=10_000, later=5_000), ReadWindows()
    first(windows, index, T0, 100)
    assert index.read == 10_000  # no floor yet: the whole range, once
    for moment in range(1, 6):  # nothing refreshed: the same 100 each pass
        index.read = 0
        assert first(windows, index, T0 + timedelta(seconds=moment), 100) == index.one_find(T0, 100)
        assert index.read <= 150, index.read


def test_a_read_follows_its_records_as_they_are_refreshed() -> None:
    index, windows = seeded(due=5_000, later=0), ReadWindows()
    reads = []
    for moment in range(60):
        index.read = 0
        got = first(windows, index, T0 + timedelta(seconds=moment), 100)
        assert got == index.one_find(T0 + timedelta(seconds=moment), 100)
        reads.append(index.read)
        for date, record_id in got:
            index.write((date + timedelta(days=1), record_id))
    assert not index.one_find(T0, 1)  # all refreshed
    # about `limit` a pass (more when a window overshoots), never the 5,000 due
    assert statistics.median(reads[1:50]) <= 150 and max(reads[1:]) <= 400, str(reads)


def test_a_record_written_below_the_floor_comes_first_in_the_next_pass() -> None:
    index, windows = seeded(due=1_000, later=0), ReadWindows()
    first(windows, index, T0, 10)
    straggler = (T0 - timedelta(hours=5), "written-since")
    index.write(straggler)
    index.read = 0
    got = first(windows, index, T0, 10)
    assert got[0] == straggler and got == index.one_find(T0, 10)
    assert index.read <= 30, index.read


def test_no_piece_reads_the_records_with_no_date() -> None:
    index, windows = seeded(due=50, later=50, undated=10_000), ReadWindows()
    for moment in range(4):  # the first pass and the next ones
        index.read = 0
        assert first(windows, index, T0 + timedelta(seconds=moment), 10) == index.one_find(T0, 10)
        assert index.read <= 50, index.read


def test_a_record_read_twice_by_two_pieces_is_answered_once() -> None:
    index, windows = seeded(due=200, later=0), ReadWindows()
    first(windows, index, T0, 10)
    moved = index.one_find(T0, 1)[0]
    calls = 0
    fetch = index.fetch

    async def moving(dates: dict[str, Any], n: int) -> list[Record]:
        # another process moves the oldest record to a later date, still due, after the piece
        # that read it (the first window: the piece below the floor comes before it)
        nonlocal calls
        calls += 1
        got = await fetch(dates, n)
        if moved in got:
            index.write((T0 - timedelta(microseconds=1), moved[1]))
        return got

    got = asyncio.run(windows.first("due", LOWEST, T0, 300, moving, when, ident))
    assert calls > 2 and len({ident(r) for r in got}) == len(got) == 200
