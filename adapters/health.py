"""Health of the dependencies: one named check per dependency, and the start-up requirement
that a dependency answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from attrs import define

from connector_core.errors import ConnectorManagerError, Unavailable

Probe = Callable[[], Awaitable[bool]]

#: how long start-up waits for a dependency's first answer
START_UP_TIMEOUT_SECONDS = 15.0


@define
class NamedCheck:
    """A :class:`~connector_core.ports.health.HealthCheck` from a probe (a round trip that
    answers True when the dependency is healthy)."""

    name: str
    required: bool
    probe: Probe

    async def check(self) -> bool:
        try:
            return bool(await self.probe())
        except Exception:  # a health probe reports; it never raises
            return False


async def require(probe: Probe, what: str) -> None:
    """:class:`Unavailable` ("cannot reach ``what``: why") unless ``probe`` answers True in
    time. ``what`` names the dependency for a person and must carry no credential."""
    try:
        async with asyncio.timeout(START_UP_TIMEOUT_SECONDS):
            ok = await probe()
    except Exception as exc:  # any failure to answer is the same answer
        why = exc.message if isinstance(exc, ConnectorManagerError) else type(exc).__name__
        raise Unavailable(f"cannot reach {what}: {why}") from None
    if not ok:
        raise Unavailable(f"cannot reach {what}")
