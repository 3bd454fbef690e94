"""Keeps OAuth tokens fresh, safely when many workers share one store.

Every provider call for a token happens under the token's lease
(:mod:`~connector_core.services.token_lease`): with rotating refresh tokens, two workers
refreshing the same token burn it. After taking the lease the record is read again (another
worker may just have refreshed it). One refresh (the provider call, its retries, a caller going
away mid-call) is :mod:`~connector_core.services.refresh_attempt`; how the outcome is stored,
and what a refresh that finishes after a person or the provider changed the token may do, is
:mod:`~connector_core.services.refresh_outcomes`; the expiry sweep is
:mod:`~connector_core.services.expiry`.

Failures: retryable ones (network, 5xx, 429) are retried ``policy.attempts`` times in the run
(``Retry-After`` honoured), then the token rests (growing per-token cooldown), so failing tokens
never crowd the loop. ``invalid_grant`` and kin mark the token and its connector as needing
re-authorization, once, and the token is not tried again until a person re-authorizes. Plain
4xx answers (``invalid_scope``, ...) rest the token like retryable failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from connector_core.errors import (
    Conflict,
    ConnectorDisabled,
    ConnectorManagerError,
    DomainRuleViolation,
    NotFound,
    NoTokens,
    ReauthorizationRequired,
    RetryableProviderError,
)
from connector_core.ports.lock import LeasedTokenReads, LeaseLock
from connector_core.ports.oauth_provider import OAuthProviderClient
from connector_core.ports.oauth_state import OAuthStateStore
from connector_core.services.context import ServiceContext
from connector_core.services.expiry import ExpirySweep
from connector_core.services.maintenance import run_round
from connector_core.services.oauth import OAuthService
from connector_core.services.providers import ResolvedProvider
from connector_core.services.refresh_attempt import BatchTurns, RefreshAttempt
from connector_core.services.refresh_outcomes import RefreshOutcome, RefreshOutcomes, RefreshReport, RefreshResult
from connector_core.services.refresh_warnings import RefreshTokenWarnings
from connector_core.services.token_lease import BackgroundReleases, HeldLease, TokenLeases
from connector_core.tokens import TokenRecord, TokenStatus

__all__ = ["CredentialsSource", "OutcomeListener", "RefreshOutcome", "RefreshReport", "TokenRefresher"]

log = logging.getLogger(__name__)


#: ``(org_id, connector_key) -> ResolvedProvider``: the provider URLs and client of one org.
CredentialsSource = Callable[[str, str], Awaitable[ResolvedProvider]]

#: told the connector key and the outcome of every refresh attempt that reached the provider
#: step (batch and on demand); an attempt that raised counts as FAILED. Must not block.
OutcomeListener = Callable[[str, RefreshOutcome], None]


#: tokens a batch works on at once per provider call it may have in flight: while some wait for
#: the store, the others keep the calls going (4 rather than 2: 0.86 against 0.77 of the raw
#: loop at concurrency 8 on a 2-core machine, where the store's thread waits for the event loop)
_TOKENS_PER_CALL = 4


def _ignore(connector_key: str, outcome: RefreshOutcome) -> None:
    return None


class TokenRefresher:
    """Refreshes due tokens (batch), one connector's token (on demand) and announces expiry.

    ``oauth`` gives the provider URLs and client credentials of an org's connector: an :class:`OAuthService`
    or any :data:`CredentialsSource`. ``sleep`` is awaited between in-run retries (inject a recorder in
    tests). ``lease_ttl`` must exceed the provider client's timeout; a retry delay longer than half of it
    ends the run early instead (the per-token cooldown then honours ``Retry-After``). ``leased_reads``
    takes a batch token's lease and reads it in one store call (a backend keeping ``lock`` with the
    tokens); by default ``lock`` and a unit of work, one after the other.
    """

    def __init__(
        self,
        ctx: ServiceContext,
        provider: OAuthProviderClient,
        lock: LeaseLock,
        *,
        oauth: OAuthService | CredentialsSource,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        lease_ttl: float = 60.0,
        lease_wait: float = 10.0,
        states: OAuthStateStore | None = None,
        leased_reads: LeasedTokenReads | None = None,
    ) -> None:
        self.ctx = ctx
        #: set by whoever counts outcomes (the metrics of the process running this refresher)
        self.on_outcome: OutcomeListener = _ignore
        self.provider = provider
        releases, reads = BackgroundReleases(ctx.clock), leased_reads
        self.leases = TokenLeases(lock, ttl=lease_ttl, wait=lease_wait, releases=releases, clock=ctx.clock, reads=reads)
        self.outcomes = RefreshOutcomes(ctx, provider, sleep)
        self.attempt = RefreshAttempt(ctx, provider, self.outcomes, sleep)
        self.expiry = ExpirySweep(ctx)
        self.warnings = RefreshTokenWarnings(ctx)
        if isinstance(oauth, OAuthService):
            self._resolve: CredentialsSource = oauth.resolve_provider
            states = states or oauth.states
        else:
            self._resolve = oauth
        self.states = states

    # -- on demand ---------------------------------------------------------------------------

    async def refresh_connector(self, org_id: str, name: str, *, force: bool = True) -> TokenRecord:
        """Refresh one connector's token now (``force``) or only when due, under its lease.

        If another worker refreshed it while we waited for the lease, that result is returned.
        Raises :class:`NotFound` (no token), :class:`ReauthorizationRequired` (needs a person),
        :class:`RetryableProviderError` (provider down; the token now rests), :class:`Conflict`
        (another worker kept the lease for ``lease_wait`` seconds).
        """
        record = await self._stored(org_id, name)
        return await self._refresh_now(record, force=force)

    async def fresh_token(self, org_id: str, name: str) -> TokenRecord:
        """The connector's token, refreshed first when due or expired (for credential reads)."""
        record = await self._stored(org_id, name)
        now = self.ctx.clock.now()
        if not record.tokens.can_refresh:
            if record.tokens.is_expired(now):
                raise ReauthorizationRequired("the access token expired and cannot be refreshed; authorize again")
            return record
        resting = record.next_attempt_at is not None and record.next_attempt_at > now
        if resting and record.tokens.is_expired(now):
            assert record.next_attempt_at is not None
            raise RetryableProviderError(
                "token refresh is backing off after provider failures; retry later",
                retry_after=(record.next_attempt_at - now).total_seconds(),
            )
        if not self.ctx.lifecycle.is_due(record, now):
            return record
        # Another worker may hold the token's lease (a batch refreshing it, or only waiting for
        # its turn to call the provider): a token that has not expired serves the read at once;
        # only an expired one waits for that worker's outcome.
        try:
            return await self._refresh_now(record, force=False, wait=record.tokens.is_expired(now))
        except Conflict:
            current = await self._stored(org_id, name)
            if current.tokens.is_expired(self.ctx.clock.now()):
                raise
            return current

    async def _stored(self, org_id: str, name: str) -> TokenRecord:
        entry = self.ctx.catalog.get(name)
        async with self.ctx.uow() as uow:
            record = await uow.tokens.get_for_connector(org_id, entry.key)
        if record is None:
            raise NoTokens(f"{entry.display_name} has no stored token; authorize it first")
        if record.status == TokenStatus.PAUSED:
            raise ConnectorDisabled(f"{entry.display_name} is disabled; enable it to use its tokens")
        if record.status != TokenStatus.ACTIVE:
            raise ReauthorizationRequired(f"{entry.display_name} needs to be authorized again")
        return record

    async def _refresh_now(self, seen: TokenRecord, *, force: bool, wait: bool = True) -> TokenRecord:
        if not seen.tokens.can_refresh:
            raise DomainRuleViolation("the stored token has no refresh token; authorize again")
        async with self.leases.hold(seen.id, wait=wait) as held:
            if held is None:
                raise Conflict("a refresh of this token is already running; retry shortly")
            current = await self._load(seen.id)
            if current is None:
                raise NotFound("the token was removed meanwhile")
            if current.status == TokenStatus.PAUSED:
                raise ConnectorDisabled("the connector is disabled; enable it to use its tokens")
            if current.status != TokenStatus.ACTIVE:
                raise ReauthorizationRequired("the connector needs to be authorized again")
            if current.tokens.obtained_at > seen.tokens.obtained_at:
                return current  # refreshed by another worker while we waited
            now = self.ctx.clock.now()
            if current.next_attempt_at is not None and current.next_attempt_at > now:
                # resting after provider failures: a forced refresh must not start a storm
                raise RetryableProviderError(
                    "token refresh is backing off after provider failures; retry later",
                    retry_after=(current.next_attempt_at - now).total_seconds(),
                )
            if not force and not self.ctx.lifecycle.is_due(current, now):
                return current
            result = await self._run(current, held)
        if result.error is not None:
            raise result.error
        if result.record is None:
            raise Conflict("the token was replaced or removed during the refresh; retry")
        return result.record

    # -- batch -------------------------------------------------------------------------------

    async def refresh_due(
        self, batch_size: int = 100, concurrency: int = 8, *, stop: asyncio.Event | None = None
    ) -> RefreshReport:
        """Refresh up to ``batch_size`` due tokens, at most ``concurrency`` refresh calls to the providers at
        a time. Four times as many tokens are worked on at once: while some wait for the store (their lease, the
        token read again, the outcome's commit), the others' calls keep ``concurrency`` in flight. A token
        waiting for a call's turn holds its lease, renewed before its call as before any (:meth:`HeldLease.step`).

        ``stop`` (the worker shutting down): once set, the tokens whose call has not started are skipped,
        and the calls in flight end as usual, their outcome stored. Cancelled instead, the batch still
        waits for each call in flight and stores its answer (the provider may have rotated the refresh
        token already) before the cancellation goes on."""
        now = self.ctx.clock.now()
        async with self.ctx.uow() as uow:
            due = list(await uow.tokens.due_before(now, batch_size))
        if not due:
            return RefreshReport()
        batch = BatchTurns(concurrency, stop)
        gate = asyncio.Semaphore(_TOKENS_PER_CALL * max(1, concurrency))

        async def one(record: TokenRecord) -> RefreshOutcome:
            async with gate:
                if batch.stopping:
                    return RefreshOutcome.SKIPPED
                try:
                    return (await self._refresh_leased(record, batch)).outcome
                except ConnectorManagerError as exc:
                    log.warning(
                        "token refresh failed: token=%s connector=%s (%s: %s)",
                        record.id,
                        record.connector_key,
                        type(exc).__name__,
                        exc.message,
                    )
                    return RefreshOutcome.FAILED
                except Exception as exc:  # one broken token must not abort the batch
                    log.error(
                        "token refresh failed unexpectedly: token=%s connector=%s (%s)",
                        record.id,
                        record.connector_key,
                        type(exc).__name__,
                    )
                    return RefreshOutcome.FAILED

        try:
            # return_exceptions: cancelled, the batch still waits for every token (each call in
            # flight stores its answer first); ``one`` itself lets no error out
            results = await asyncio.gather(*(one(r) for r in due), return_exceptions=True)
            counts = Counter(r if isinstance(r, RefreshOutcome) else RefreshOutcome.FAILED for r in results)
        finally:
            await self.leases.settle()  # every lease of the batch is free when it returns
        report = RefreshReport(
            refreshed=counts[RefreshOutcome.REFRESHED],
            failed=counts[RefreshOutcome.FAILED],
            reauth_required=counts[RefreshOutcome.REAUTH_REQUIRED],
            skipped=counts[RefreshOutcome.SKIPPED],
        )
        log.info(
            "token refresh run: refreshed=%d failed=%d reauth_required=%d skipped=%d",
            report.refreshed,
            report.failed,
            report.reauth_required,
            report.skipped,
        )
        return report

    async def _refresh_leased(self, due: TokenRecord, batch: BatchTurns) -> RefreshResult:
        # The provider and client credentials (store reads that need no lease; a token keeps
        # its org and connector) are resolved while the lease is taken and the token read
        # again (in one store call where the backend can), not after.
        resolving = asyncio.ensure_future(self._resolve(due.org_id, due.connector_key))
        try:
            async with self.leases.hold_read(due.id, self.ctx.uow) as taken:
                if taken is None:
                    return RefreshResult(RefreshOutcome.SKIPPED)
                held, current = taken
                if current is None or not self.ctx.lifecycle.is_due(current, self.ctx.clock.now()):
                    return RefreshResult(RefreshOutcome.SKIPPED, current)
                return await self._run(current, held, resolving, batch)
        finally:
            if not resolving.done():
                resolving.cancel()
            resolving.add_done_callback(_retrieve)

    async def sweep_expired(self, limit: int = 500) -> int:
        """See :meth:`ExpirySweep.run`."""
        return await self.expiry.run(limit)

    # -- loop --------------------------------------------------------------------------------

    async def run_once(
        self, batch_size: int = 100, concurrency: int = 8, *, stop: asyncio.Event | None = None
    ) -> RefreshReport:
        """One maintenance round: :func:`~connector_core.services.maintenance.run_round`."""
        return await run_round(self, batch_size, concurrency, stop=stop)

    async def run_forever(
        self, interval: float, stop: asyncio.Event, *, batch_size: int = 100, concurrency: int = 8
    ) -> None:
        """:meth:`run_once` every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            await self.run_once(batch_size, concurrency, stop=stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    # -- one refresh -------------------------------------------------------------------------

    async def _run(
        self,
        record: TokenRecord,
        held: HeldLease,
        resolving: Awaitable[ResolvedProvider] | None = None,
        batch: BatchTurns | None = None,
    ) -> RefreshResult:
        """Refresh ``record`` (freshly loaded, under ``held``), store the outcome and tell :attr:`on_outcome`.
        ``resolving``: its provider, when already being resolved; ``batch``: what a batch's tokens share."""
        resolving = resolving or self._resolve(record.org_id, record.connector_key)
        try:
            result = await self.attempt.run(record, held, resolving, batch)
        except Exception:
            self.on_outcome(record.connector_key, RefreshOutcome.FAILED)
            raise
        self.on_outcome(record.connector_key, result.outcome)
        return result

    async def _load(self, token_id: str) -> TokenRecord | None:
        async with self.ctx.uow() as uow:
            return await uow.tokens.get(token_id)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Marks the outcome of a resolution nobody awaited (skipped token) as seen."""
    if not task.cancelled():
        task.exception()
