"""One refresh of one token, under its lease: the provider call (a turn of the batch's calls,
the lease renewed first, the provider given at most half of it), in-run retries of retryable
failures (``Retry-After`` honoured), and the outcome stored (:mod:`.refresh_outcomes`).

A caller that goes away during the call (a worker shutting down, its grace over) does not lose
the answer: with rotating refresh tokens the provider has replaced the old one whatever the
caller does, so the call's answer is waited for and stored, and a commit under way finishes,
before the cancellation goes on (however often the caller is cancelled meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from connector_core.errors import (
    ConnectorManagerError,
    LeaseLost,
    ProviderError,
    ReauthorizationRequired,
    RetryableProviderError,
    Unavailable,
)
from connector_core.ports.oauth_provider import OAuthProviderClient
from connector_core.services.context import ServiceContext
from connector_core.services.providers import ResolvedProvider
from connector_core.services.refresh_outcomes import RefreshOutcome, RefreshOutcomes, RefreshResult
from connector_core.services.token_lease import HeldLease
from connector_core.tokens import TokenRecord

__all__ = ["BatchTurns", "RefreshAttempt"]

log = logging.getLogger("connector_core.services.refresh")  # where operators have always found it

T = TypeVar("T")


class BatchTurns:
    """What the tokens of one batch share: a turn of ``calls`` per provider call, and the
    worker's ``stop``: once it is set, no token of the batch starts a provider call."""

    __slots__ = ("calls", "stop")

    def __init__(self, concurrency: int, stop: asyncio.Event | None) -> None:
        self.calls = asyncio.Semaphore(max(1, concurrency))
        self.stop = stop

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()


class RefreshAttempt:
    """Refreshes one token with its provider and stores the outcome."""

    def __init__(
        self,
        ctx: ServiceContext,
        provider: OAuthProviderClient,
        outcomes: RefreshOutcomes,
        sleep: Callable[[float], Awaitable[Any]],
    ) -> None:
        self.ctx, self.provider, self.outcomes, self._sleep = ctx, provider, outcomes, sleep

    async def run(
        self,
        record: TokenRecord,
        held: HeldLease,
        resolving: Awaitable[ResolvedProvider],
        batch: BatchTurns | None,
    ) -> RefreshResult:
        """Refresh ``record`` (freshly loaded, under ``held``) with the provider ``resolving``
        gives, and store the outcome; ``batch``: a turn of its calls per provider call."""
        used = record.tokens.refresh_token
        assert used is not None
        try:
            resolved = await resolving
        except Unavailable:
            raise
        except RetryableProviderError as exc:
            return await self.outcomes.failure(record, held, exc)
        except ConnectorManagerError as exc:  # client gone, connector unknown, ...
            failure = RetryableProviderError(f"cannot refresh: {exc.message}")
            return await self.outcomes.failure(record, held, failure)
        policy, lifecycle = self.ctx.policy, self.ctx.lifecycle
        attempt = 1
        while True:
            try:
                # The lease is renewed first and the provider gets at most half of it, so a
                # worker whose lease lapsed never races another with the same refresh token.
                async with batch.calls if batch else contextlib.nullcontext():  # the turn, then renew and call
                    if batch is not None and batch.stopping:
                        return RefreshResult(RefreshOutcome.SKIPPED)
                    sending = asyncio.ensure_future(
                        held.step(lambda: self.provider.refresh(resolved.spec, resolved.client, refresh_token=used))
                    )
                    try:
                        response = await asyncio.shield(sending)
                    except asyncio.CancelledError:
                        with contextlib.suppress(asyncio.CancelledError):  # cancelled again: still stored
                            await _to_the_end(self._keep_late_answer(sending, record, held, resolved))
                        raise
                break
            except LeaseLost:
                log.warning("refresh lease lost before calling the provider: token=%s", record.id)
                return RefreshResult(RefreshOutcome.SKIPPED)
            except TimeoutError:
                failure = RetryableProviderError("the provider did not answer within half the refresh lease")
                return await self.outcomes.failure(record, held, failure)
            except ReauthorizationRequired as exc:
                return await self.outcomes.reauthorization_required(record, held, exc)
            except RetryableProviderError as exc:
                delay = lifecycle.retry_delay(attempt, exc.retry_after)
                if attempt >= max(1, policy.attempts) or delay > held.ttl / 2:
                    return await self.outcomes.failure(record, held, exc)
                log.info(
                    "token refresh attempt %d failed, retrying in %.1fs: token=%s (%s)",
                    attempt,
                    delay,
                    record.id,
                    exc.message,
                )
                try:
                    await held.renew()  # the wait is shorter than half the renewed lease
                except LeaseLost:
                    log.warning("refresh lease lost while backing off: token=%s", record.id)
                    return RefreshResult(RefreshOutcome.SKIPPED)
                await self._sleep(delay)
                attempt += 1
            except ProviderError as exc:
                failure = RetryableProviderError(exc.message, status=exc.status, error_code=exc.error_code)
                return await self.outcomes.failure(record, held, failure)
        return await _to_the_end(self.outcomes.success(record, held, response, resolved))

    async def _keep_late_answer(
        self, sending: asyncio.Future[Any], record: TokenRecord, held: HeldLease, resolved: ResolvedProvider
    ) -> None:
        """The caller went away (a shutdown, a request given up) while the provider call was in
        flight. The provider may rotate the refresh token whatever happens here, so its answer is
        waited for (the call has at most half the lease) and stored before the cancellation goes
        on; without an answer there is nothing to keep."""
        try:
            response = await sending
        except Exception:
            return
        log.info("storing the answer of a refresh call whose caller went away: token=%s", record.id)
        try:
            await self.outcomes.success(record, held, response, resolved)
        except Exception as exc:
            log.warning("could not store the answer of a refresh call: token=%s (%s)", record.id, type(exc).__name__)


async def _to_the_end(step: Awaitable[T]) -> T:
    """Run ``step`` (storing a provider's answer) to its end even if the caller is cancelled
    meanwhile, once or more: the cancellation is raised once it ended (and its own outcome
    dropped then, an error included)."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})  # a cancellation of this wait leaves ``task`` running
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # seen: the caller hears the cancellation
        raise asyncio.CancelledError
    return task.result()
