"""The gauges read from the stores at scrape time: tokens by state, the soonest access-token
expiry, refresh tokens near their provider's limit, the outbox backlog and the relay's lag, and
the health of each dependency.

Reading them costs one aggregate query per store (no token material is read) and the health
probes, each bounded by a time limit; a snapshot is reused for ``max_age`` seconds, so scrapes
from several Prometheus servers cost one reading. Every label value comes from a bounded set:
connector keys of the catalog, fixed states, dependency names.

The token census scans every record: 2 to 6 s at 1,000,000 records on SQLite. So a scrape waits
for a new reading at most ``wait`` seconds and is otherwise served the last one (the reading
goes on, for the next scrape), and a reading is reused for ten times as long as its census took
(at least ``max_age``, at most a minute; a reading in which a part failed is not stretched).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from attrs import field, frozen
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connector_core.ports.outbox import OutboxBacklog
from connector_core.tokens import TokenCensus, TokenState
from entrypoints.health_report import HealthReport, check_health

if TYPE_CHECKING:
    from entrypoints.bootstrap import Container

log = logging.getLogger("connector_manager.metrics")

PREFIX = "connector_manager"

#: the states every connector with tokens reports (0 when none is in it)
STATES = tuple(TokenState)


@frozen
class Snapshot:
    """One reading of the stores; a part that could not be read is None (its series are left out)."""

    census: TokenCensus | None = None
    #: None without a relay (events stay in the outbox until read through the events route)
    backlog: OutboxBacklog | None = None
    #: seconds since the oldest unpublished event occurred (0 when nothing waits)
    relay_lag: float = 0.0
    #: events the broker refused for good, set aside by the relay (read with the backlog)
    set_aside: int = 0
    health: HealthReport | None = None
    errors: tuple[str, ...] = field(factory=tuple)
    #: how long the token census took (seconds; 0 when it failed)
    census_seconds: float = 0.0


#: a snapshot whose census took T seconds is reused for at least this many times T ...
_REUSE_FACTOR = 10
#: ... but no longer than this (seconds): the health and outbox series are in it too
_REUSE_AT_MOST = 60.0


class StoreGauges(Collector):
    """A collector whose samples are the last :class:`Snapshot`; :meth:`update` reads a new one
    when the last is older than ``max_age`` seconds (or ten times what it took to read)."""

    def __init__(
        self,
        container: Callable[[], Container],
        *,
        max_age: float = 5.0,
        health_timeout: float = 2.0,
        wait: float = 3.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._container = container
        self._max_age = max_age
        self._health_timeout = health_timeout
        self._wait = wait
        self._monotonic = monotonic
        self._snapshot = Snapshot()
        self._taken_at: float | None = None
        self._reuse_for = max_age
        self._reading: asyncio.Task[None] | None = None

    async def update(self) -> None:
        """Read the stores unless the snapshot is fresh. Concurrent callers share one reading;
        each waits for it at most ``wait`` seconds (the first reading of all: until it is done),
        then has the last snapshot while the reading goes on for the next caller."""
        if self._taken_at is not None and self._monotonic() - self._taken_at < self._reuse_for:
            return
        if self._reading is None:
            self._reading = asyncio.create_task(self._read())
        reading = self._reading
        if self._taken_at is None:
            await asyncio.shield(reading)  # a caller that goes away leaves the reading running
        else:
            await asyncio.wait({reading}, timeout=self._wait)

    async def _read(self) -> None:
        try:
            snapshot = await read_snapshot(self._container(), self._health_timeout)
        except Exception as exc:  # each part's failure is in the snapshot: this is something else
            log.warning("metrics: cannot read the stores (%s)", type(exc).__name__)
            if self._taken_at is None:  # nothing read yet: say so rather than show no error
                self._snapshot = Snapshot(errors=("tokens", "outbox"))
            return  # the last snapshot stays, stale: the next scrape tries again
        finally:
            self._reading = None
        self._snapshot, self._taken_at = snapshot, self._monotonic()
        # only a census that succeeded stretches the reuse: a failed one is tried again soon
        scaled = min(_REUSE_AT_MOST, _REUSE_FACTOR * snapshot.census_seconds) if not snapshot.errors else 0.0
        self._reuse_for = max(self._max_age, scaled)

    def describe(self) -> list[Metric]:
        return []  # nothing to read when registered: the families are known at scrape time

    def collect(self) -> Iterator[Metric]:
        yield from families(self._snapshot)


async def read_snapshot(container: Container, health_timeout: float) -> Snapshot:
    errors: list[str] = []
    now = container.ctx.clock.now()

    took: list[float] = []

    async def census() -> TokenCensus | None:
        try:
            started = time.monotonic()
            async with container.ctx.uow() as uow:
                counted = await uow.tokens.census(now)
            took.append(time.monotonic() - started)
            return counted
        except Exception as exc:  # the dependency gauge says which one is down
            errors.append("tokens")
            log.warning("metrics: cannot count tokens (%s)", type(exc).__name__)
            return None

    async def backlog() -> tuple[OutboxBacklog, int] | None:
        if container.relay is None:
            return None
        try:
            outbox = container.storage.outbox
            return await outbox.backlog(), await outbox.set_aside_count()
        except Exception as exc:
            errors.append("outbox")
            log.warning("metrics: cannot read the outbox backlog (%s)", type(exc).__name__)
            return None

    counted, outbox, health = await asyncio.gather(
        census(), backlog(), check_health(container.health_checks, health_timeout)
    )
    pending, set_aside = outbox if outbox is not None else (None, 0)
    lag = 0.0
    if pending is not None and pending.oldest_occurred_at is not None:
        lag = max(0.0, (now - pending.oldest_occurred_at).total_seconds())
    return Snapshot(counted, pending, lag, set_aside, health, tuple(errors), census_seconds=sum(took))


def families(snapshot: Snapshot) -> Iterable[Metric]:
    if snapshot.census is not None:
        yield from _token_families(snapshot.census)
    if snapshot.backlog is not None:
        yield GaugeMetricFamily(
            f"{PREFIX}_outbox_backlog",
            "Events stored and not yet published by the relay",
            value=snapshot.backlog.pending,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_outbox_relay_lag_seconds",
            "Seconds since the oldest unpublished event occurred (0 when the relay is caught up)",
            value=snapshot.relay_lag,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_outbox_set_aside",
            "Events the broker refused for good (too large, invalid), set aside by the relay",
            value=snapshot.set_aside,
        )
    if snapshot.health is not None:
        up = GaugeMetricFamily(
            f"{PREFIX}_dependency_up",
            "1 when the dependency answered its health probe in time, else 0",
            labels=["dependency", "required"],
        )
        for dep in snapshot.health.dependencies:
            up.add_metric([dep.name, "true" if dep.required else "false"], 1 if dep.healthy else 0)
        yield up
    errors = GaugeMetricFamily(
        f"{PREFIX}_metrics_read_errors",
        "Parts of the last store reading that failed (their series are missing from this scrape)",
        labels=["part"],
    )
    for part in ("tokens", "outbox"):
        errors.add_metric([part], 1 if part in snapshot.errors else 0)
    yield errors


def _token_families(census: TokenCensus) -> Iterable[Metric]:
    tokens = GaugeMetricFamily(
        f"{PREFIX}_tokens", "Stored OAuth tokens by connector and state", labels=["connector", "state"]
    )
    keys = sorted({key for key, _ in census.states})
    for key in keys:
        for state in STATES:
            tokens.add_metric([key, state.value], census.states.get((key, state), 0))
    yield tokens
    soonest = GaugeMetricFamily(
        f"{PREFIX}_token_soonest_expiry_timestamp_seconds",
        "Unix time of the soonest access-token expiry among a connector's active tokens",
        labels=["connector"],
    )
    for key, moment in sorted(census.soonest_expiry.items()):
        soonest.add_metric([key], moment.timestamp())
    yield soonest
    expiring = GaugeMetricFamily(
        f"{PREFIX}_refresh_tokens_expiring",
        "Live refresh-token lineages near their provider's limit (within7Days, within1Day, expired)",
        labels=["connector", "warning"],
    )
    for (key, warning), count in sorted(census.expiring.items()):
        expiring.add_metric([key, warning.value], count)
    yield expiring
