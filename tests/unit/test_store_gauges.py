"""The store gauges' reading at scale: a slow census never makes a scrape wait longer than
``wait`` once there is a snapshot to serve, and a reading whose census took T seconds is reused
for ten times T (at least ``max_age``, at most 60 s; not stretched when a part failed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from entrypoints.observability import store_gauges
from entrypoints.observability.store_gauges import Snapshot, StoreGauges


class Readings:
    """Stands for ``read_snapshot``: each reading takes ``cost`` seconds of the fake clock and
    waits for ``gate`` (open unless a test closes it); snapshots are numbered by ``set_aside``."""

    def __init__(self) -> None:
        self.now = 0.0
        self.cost = 0.0
        self.count = 0
        self.errors: tuple[str, ...] = ()
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, container: Any, health_timeout: float) -> Snapshot:
        self.count += 1
        number = self.count
        await self.gate.wait()
        self.now += self.cost
        return Snapshot(set_aside=number, census_seconds=self.cost, errors=self.errors)


@pytest.fixture
def readings(monkeypatch: pytest.MonkeyPatch) -> Readings:
    fake = Readings()
    monkeypatch.setattr(store_gauges, "read_snapshot", fake)
    return fake


def gauges_on(readings: Readings, *, max_age: float = 5.0, wait: float = 0.05) -> StoreGauges:
    return StoreGauges(lambda: None, max_age=max_age, wait=wait, monotonic=lambda: readings.now)  # type: ignore[arg-type,return-value]


async def test_a_stale_snapshot_is_served_when_the_new_reading_is_slow_then_the_new_one(readings: Readings) -> None:
    gauges = gauges_on(readings)
    await gauges.update()
    assert gauges._snapshot.set_aside == 1

    readings.now += 6  # stale
    readings.gate.clear()  # the next reading hangs (a census scanning a million records)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await gauges.update()
    assert loop.time() - started < 1.0  # waited ``wait`` (0.05 s), not for the reading
    assert gauges._snapshot.set_aside == 1  # the last one, served meanwhile
    await gauges.update()  # a second scrape meanwhile shares the reading under way
    assert readings.count == 2

    readings.gate.set()
    await asyncio.sleep(0.01)
    await gauges.update()
    assert gauges._snapshot.set_aside == 2
    assert readings.count == 2


async def test_the_first_reading_is_waited_for_whatever_it_takes(readings: Readings) -> None:
    gauges = gauges_on(readings, wait=0.01)
    readings.gate.clear()
    scrape = asyncio.ensure_future(gauges.update())
    await asyncio.sleep(0.1)
    assert not scrape.done()  # nothing to serve yet: a scrape would show no store series at all
    readings.gate.set()
    await scrape
    assert gauges._snapshot.set_aside == 1


@pytest.mark.parametrize(
    ("census", "failed", "fresh_for"),
    [
        (2.5, False, 25.0),  # the census of 1,000,000 SQLite records: ten times as long
        (30.0, False, 60.0),  # at most a minute: the health and outbox series are in it too
        (2.5, True, 5.0),  # a part failed: not stretched, tried again after max_age
        (0.01, False, 5.0),  # a quick reading: max_age
    ],
)
async def test_a_reading_is_reused_for_ten_times_its_census_within_bounds(
    readings: Readings, census: float, failed: bool, fresh_for: float
) -> None:
    gauges = gauges_on(readings, max_age=5.0)
    readings.cost, readings.errors = census, ("tokens",) if failed else ()
    await gauges.update()
    readings.now += fresh_for - 0.1
    await gauges.update()
    assert readings.count == 1
    readings.now += 0.2
    await gauges.update()
    assert readings.count == 2


async def test_a_reading_that_fails_keeps_the_last_snapshot_and_is_tried_again(
    readings: Readings, monkeypatch: pytest.MonkeyPatch
) -> None:
    gauges = gauges_on(readings)
    await gauges.update()

    async def broken(container: Any, health_timeout: float) -> Snapshot:
        raise RuntimeError("no container")

    monkeypatch.setattr(store_gauges, "read_snapshot", broken)
    readings.now += 6
    await gauges.update()
    await asyncio.sleep(0)
    assert gauges._snapshot.set_aside == 1
    monkeypatch.setattr(store_gauges, "read_snapshot", readings)
    await gauges.update()
    await asyncio.sleep(0.01)
    await gauges.update()
    assert gauges._snapshot.set_aside == 2


async def test_a_first_reading_that_fails_shows_the_read_errors(
    readings: Readings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(container: Any, health_timeout: float) -> Snapshot:
        raise RuntimeError("no container")

    monkeypatch.setattr(store_gauges, "read_snapshot", broken)
    gauges = gauges_on(readings)
    await gauges.update()
    errors = {
        s.labels["part"]: s.value
        for m in gauges.collect()
        if m.name == "connector_manager_metrics_read_errors"
        for s in m.samples
    }
    assert errors == {"tokens": 1, "outbox": 1}
