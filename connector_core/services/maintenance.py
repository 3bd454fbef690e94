"""One round of token maintenance, what a refresher worker does every interval: refresh the due
tokens, announce expired ones, warn of refresh tokens about to die, purge expired OAuth states.

Each step is on its own: a failing one is logged (never with secrets) and the others still run,
so one broken dependency of a step does not stop the rest of the round.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from connector_core.errors import ConnectorManagerError
from connector_core.services.refresh_outcomes import RefreshReport

if TYPE_CHECKING:
    from connector_core.services.refresh import TokenRefresher

__all__ = ["run_round"]

log = logging.getLogger("connector_core.services.refresh")  # where operators have always found it


async def run_round(
    refresher: TokenRefresher, batch_size: int = 100, concurrency: int = 8, *, stop: asyncio.Event | None = None
) -> RefreshReport:
    """The round; what the refresh of due tokens did (empty when that step failed). ``stop``: see
    :meth:`TokenRefresher.refresh_due`."""
    report = RefreshReport()
    try:
        report = await refresher.refresh_due(batch_size, concurrency, stop=stop)
    except Exception as exc:
        _log_failure("refresh", exc)
    try:
        await refresher.sweep_expired()
    except Exception as exc:
        _log_failure("expiry sweep", exc)
    try:
        await refresher.warnings.run()
    except Exception as exc:
        _log_failure("refresh-token warning sweep", exc)
    if refresher.states is not None:
        try:
            await refresher.states.purge_expired(refresher.ctx.clock.now())
        except Exception as exc:
            _log_failure("state purge", exc)
    return report


def _log_failure(step: str, exc: Exception) -> None:
    if isinstance(exc, ConnectorManagerError):
        log.warning("token maintenance %s failed (%s: %s)", step, type(exc).__name__, exc.message)
    else:  # an unexpected error: its message might quote data, so only its type is logged
        log.error("token maintenance %s failed unexpectedly (%s)", step, type(exc).__name__)
