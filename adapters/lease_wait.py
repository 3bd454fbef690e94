"""Waiting for a lease held elsewhere, written once for every lock adapter (tenacity).

An adapter implements one attempt; :func:`acquire_waiting` repeats it every ``POLL_SECONDS``
while the lease is held, within ``wait`` seconds — counted by attempts too, so an injected
instant ``sleep`` (tests) ends as surely as the real one. Errors (:class:`Unavailable`) are not
retried here: they end the wait at once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt, stop_after_delay, wait_fixed

from connector_core.ports.lock import Lease

__all__ = ["POLL_SECONDS", "Sleep", "acquire_waiting"]

#: how often a waiting acquirer tries again
POLL_SECONDS = 0.1

Sleep = Callable[[float], Awaitable[Any]]


def _still_held(state: RetryCallState) -> None:
    return None


async def acquire_waiting(
    attempt: Callable[[], Awaitable[Lease | None]], wait: float, *, sleep: Sleep = asyncio.sleep
) -> Lease | None:
    """``attempt()`` until it returns a lease, for up to ``wait`` seconds; None when it never did."""
    if wait <= 0:
        return await attempt()
    retrying = AsyncRetrying(
        retry=retry_if_result(lambda lease: lease is None),
        stop=stop_after_delay(wait) | stop_after_attempt(1 + math.ceil(wait / POLL_SECONDS)),
        wait=wait_fixed(POLL_SECONDS),
        sleep=sleep,
        retry_error_callback=_still_held,
        reraise=True,
    )

    async def one() -> Lease | None:  # tenacity awaits only what a coroutine function returns
        return await attempt()

    lease: Lease | None = await retrying(one)
    return lease
