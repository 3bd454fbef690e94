"""Health of the dependencies: one named check per dependency, and the start-up requirement
that a dependency answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from attrs import define

from connector_core.errors import ConnectorManagerError, Unavailable

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[bool]]


class Refused(Exception):
    """A start-up probe's answer: the dependency answered and refused this service (wrong
    credentials, say). Trying again cannot help, so :func:`require` stops at once. The message
    says what to check and carries no credential."""


#: how long start-up waits for a dependency's first answer (the default of the
#: ``start_up_timeout_seconds`` setting)
START_UP_TIMEOUT_SECONDS = 15.0
#: the pause after a failed start-up probe: doubled after each failure, up to the longest
FIRST_PAUSE_SECONDS = 0.1
LONGEST_PAUSE_SECONDS = 1.0


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


async def require(probe: Probe, what: str, *, within: float = START_UP_TIMEOUT_SECONDS) -> None:
    """Return once ``probe`` answers True, or raise :class:`Unavailable` ("cannot reach
    ``what``: why", the last failure's) when it has not within ``within`` seconds.

    A probe that fails (raises, or answers False) is tried again after a pause (0.1 s, doubled
    up to 1 s): a dependency may be away for a moment when a process starts (a failover), and
    that should not stop the process. A probe that raises :class:`Refused` (the dependency
    answered and refused this service) ends the wait at once. The wait ends when the next try would come after the
    deadline; a probe still running at the deadline is cut there. ``what`` names the dependency
    for a person and must carry no credential."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pause = FIRST_PAUSE_SECONDS
    waiting = False
    while True:
        try:
            # a scope per attempt: a probe that turns the cancellation at the deadline into another
            # error still ends the wait (the check below), it cannot make it go on for ever
            async with asyncio.timeout_at(deadline):
                if await probe():
                    return
            why, kind = None, "no healthy answer"
        except Refused as exc:  # it answered: waiting longer will not change its mind
            raise Unavailable(f"{what} refused this service: {exc}") from None
        except Exception as exc:  # any failure to answer is the same answer
            # only our own errors' messages are shown: a driver's text may repeat a URL
            why = exc.message if isinstance(exc, ConnectorManagerError) else type(exc).__name__
            kind = type(exc).__name__
        if loop.time() + pause >= deadline:
            raise Unavailable(f"cannot reach {what}: {why}" if why else f"cannot reach {what}") from None
        if not waiting:
            log.info("start-up waits for %s to answer (%s); trying again for up to %gs", what, kind, within)
            waiting = True
        await asyncio.sleep(pause)
        pause = min(2 * pause, LONGEST_PAUSE_SECONDS)
