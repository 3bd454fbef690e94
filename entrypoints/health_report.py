"""Health of each dependency, probed at once with a time limit: one report for the API's
health route and the web console's health page."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

from attrs import frozen

from connector_core.ports.health import HealthCheck


@frozen
class DependencyHealth:
    name: str
    healthy: bool
    #: the service cannot work without it (its failure makes the whole service unhealthy)
    required: bool


@frozen
class HealthReport:
    dependencies: tuple[DependencyHealth, ...]
    checked_at: datetime

    @property
    def healthy(self) -> bool:
        """False when a required dependency is unhealthy (an optional one only degrades)."""
        return all(d.healthy or not d.required for d in self.dependencies)


async def check_health(checks: Iterable[HealthCheck], within_seconds: float) -> HealthReport:
    """Every check at once; one that fails, raises or takes longer than ``within_seconds`` is
    unhealthy."""

    async def probe(check: HealthCheck) -> DependencyHealth:
        try:
            healthy = await asyncio.wait_for(check.check(), timeout=within_seconds)
        except Exception:  # TimeoutError included: a probe that does not answer is unhealthy
            healthy = False
        return DependencyHealth(check.name, bool(healthy), check.required)

    results = await asyncio.gather(*(probe(c) for c in checks))
    return HealthReport(tuple(results), datetime.now(UTC))
