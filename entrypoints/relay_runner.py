"""The outbox relay as a background loop: pass after pass until stopped.

A full batch is followed at once by the next pass, an idle pass waits ``interval``. Passes that
fail (the broker or the store is down, or something unexpected) are retried by tenacity with
exponential backoff from ``interval`` up to ``max_backoff``; :class:`RelayOutages` says once when
a dependency goes away and once when a pass proves it is back. Stopping interrupts any wait.
"""

from __future__ import annotations

import asyncio
import contextlib

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, wait_exponential

from connector_core.services.relay import OutboxRelay, RelayOutages, RelayResult

__all__ = ["run_relay"]


async def run_relay(relay: OutboxRelay, interval: float, stop: asyncio.Event, *, max_backoff: float = 10.0) -> None:
    """Relay until ``stop`` is set."""
    outages = RelayOutages(relay.clock)

    async def pause(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)

    async def one_pass() -> RelayResult:
        if stop.is_set():  # woken from a backoff by the stop: no further pass
            return RelayResult()
        result = await relay.relay_pass()
        outages.record(result)
        return result

    def gave_up(state: RetryCallState) -> RelayResult:
        assert state.outcome is not None
        return state.outcome.result()  # type: ignore[no-any-return]  # stopped while failing

    retrying = AsyncRetrying(
        retry=retry_if_result(lambda result: result.failed),
        wait=wait_exponential(multiplier=max(interval, 0.05), max=max_backoff),
        stop=lambda _state: stop.is_set(),
        sleep=pause,
        retry_error_callback=gave_up,
    )
    while not stop.is_set():
        result: RelayResult = await retrying(one_pass)
        if result.more and not result.failed:
            await asyncio.sleep(0)  # let others run, then go on draining
            continue
        await pause(interval)
