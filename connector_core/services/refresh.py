"""Keeps OAuth tokens fresh, safely when many workers share one store.

Every provider call for a token happens under the lease ``token-refresh:<token id>``: with
rotating refresh tokens, two workers refreshing the same token burn it. After taking the
lease the record is read again (another worker may just have refreshed it). A refreshed token
is committed before anyone is handed the new access token; when that commit meets a concurrent
metadata change (expiry notice), the refresh is re-applied to the newer record rather than lost,
because the provider has already retired the old refresh token.

Failures: retryable ones (network, 5xx, 429) are retried ``policy.attempts`` times in the run
(``Retry-After`` honoured), then the token rests (growing per-token cooldown), so failing tokens
never crowd the loop. ``invalid_grant`` and kin mark the token and its connector as needing
re-authorization, once, and the token is not tried again until a person re-authorizes. Plain
4xx answers (``invalid_scope``, ...) rest the token like retryable failures.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from attrs import frozen

from connector_core.errors import (
    Conflict,
    ConnectorDisabled,
    ConnectorManagerError,
    DomainRuleViolation,
    LeaseLost,
    NotFound,
    ProviderError,
    ReauthorizationRequired,
    RetryableProviderError,
    Unavailable,
    ValidationError,
)
from connector_core.model.events import DomainEvent
from connector_core.ports.lock import Lease, LeaseLock
from connector_core.ports.oauth_provider import OAuthProviderClient
from connector_core.ports.oauth_state import OAuthStateStore
from connector_core.ports.unit_of_work import UnitOfWork
from connector_core.services.context import ServiceContext
from connector_core.services.oauth import OAuthService, ResolvedProvider
from connector_core.services.revocation import revoke_at_provider
from connector_core.services.staging import stage_connector
from connector_core.tokens import RefreshFate, TokenRecord, TokenStatus

__all__ = ["CredentialsSource", "RefreshOutcome", "RefreshReport", "TokenRefresher"]

log = logging.getLogger(__name__)

#: ``(org_id, connector_key) -> ResolvedProvider``: the provider URLs and client of one org.
CredentialsSource = Callable[[str, str], Awaitable[ResolvedProvider]]

_LEASE_POLL_SECONDS = 0.1


class RefreshOutcome(enum.StrEnum):
    REFRESHED = "refreshed"
    FAILED = "failed"
    REAUTH_REQUIRED = "reauth_required"
    SKIPPED = "skipped"


@frozen
class RefreshReport:
    """What one :meth:`TokenRefresher.refresh_due` run did."""

    refreshed: int = 0
    failed: int = 0
    reauth_required: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.refreshed + self.failed + self.reauth_required + self.skipped


@frozen
class _Result:
    outcome: RefreshOutcome
    record: TokenRecord | None = None
    error: ConnectorManagerError | None = None


Apply = Callable[[UnitOfWork, TokenRecord], Awaitable[None]]


class TokenRefresher:
    """Refreshes due tokens (batch), one connector's token (on demand) and announces expiry.

    ``oauth`` gives the provider URLs and client credentials of an org's connector: an
    :class:`OAuthService` or any :data:`CredentialsSource`. ``sleep`` is awaited between
    in-run retries (inject a recorder in tests). ``lease_ttl`` must exceed the provider
    client's timeout; a retry delay longer than half of it ends the run early instead (the
    per-token cooldown then honours ``Retry-After``).
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
    ) -> None:
        self.ctx = ctx
        self.provider = provider
        self.lock = lock
        if isinstance(oauth, OAuthService):
            self._resolve: CredentialsSource = oauth.resolve_provider
            states = states or oauth.states
        else:
            self._resolve = oauth
        self.states = states
        self._sleep = sleep
        self.lease_ttl = lease_ttl
        self.lease_wait = lease_wait

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
        return await self._refresh_now(record, force=False)

    async def _stored(self, org_id: str, name: str) -> TokenRecord:
        entry = self.ctx.catalog.get(name)
        async with self.ctx.uow() as uow:
            record = await uow.tokens.get_for_connector(org_id, entry.key)
        if record is None:
            raise NotFound(f"{entry.display_name} has no stored token; authorize it first")
        if record.status == TokenStatus.PAUSED:
            raise ConnectorDisabled(f"{entry.display_name} is disabled; enable it to use its tokens")
        if record.status != TokenStatus.ACTIVE:
            raise ReauthorizationRequired(f"{entry.display_name} needs to be authorized again")
        return record

    async def _refresh_now(self, seen: TokenRecord, *, force: bool) -> TokenRecord:
        if not seen.tokens.can_refresh:
            raise DomainRuleViolation("the stored token has no refresh token; authorize again")
        lease = await self._acquire(seen.id, wait=True)
        if lease is None:
            raise Conflict("a refresh of this token is already running; retry shortly")
        try:
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
            result = await self._run(current, lease)
        finally:
            await self._release(lease)
        if result.error is not None:
            raise result.error
        if result.record is None:
            raise Conflict("the token was replaced or removed during the refresh; retry")
        return result.record

    # -- batch -------------------------------------------------------------------------------

    async def refresh_due(self, batch_size: int = 100, concurrency: int = 8) -> RefreshReport:
        """Refresh up to ``batch_size`` due tokens, at most ``concurrency`` at a time."""
        now = self.ctx.clock.now()
        async with self.ctx.uow() as uow:
            due = list(await uow.tokens.due_before(now, batch_size))
        if not due:
            return RefreshReport()
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(record: TokenRecord) -> RefreshOutcome:
            async with gate:
                try:
                    return (await self._refresh_leased(record.id)).outcome
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

        counts = Counter(await asyncio.gather(*(one(r) for r in due)))
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

    async def _refresh_leased(self, token_id: str) -> _Result:
        lease = await self._acquire(token_id, wait=False)
        if lease is None:
            return _Result(RefreshOutcome.SKIPPED)
        try:
            current = await self._load(token_id)
            if current is None or not self.ctx.lifecycle.is_due(current, self.ctx.clock.now()):
                return _Result(RefreshOutcome.SKIPPED, current)
            return await self._run(current, lease)
        finally:
            await self._release(lease)

    # -- expiry ------------------------------------------------------------------------------

    async def sweep_expired(self, limit: int = 500) -> int:
        """Announce TOKEN_EXPIRED once for every access token that expired unrefreshed. A token
        that cannot be refreshed at all also marks its connector as needing re-authorization.
        Returns how many were announced."""
        now = self.ctx.clock.now()
        async with self.ctx.uow() as uow:
            expired = list(await uow.tokens.expired_unnotified(now, limit))
        announced = 0
        for record in expired:
            try:
                async with self.ctx.uow() as uow:
                    if not record.check_expiry(now=now, ids=self.ctx.ids):
                        continue
                    events = record.pull_events()
                    if not record.tokens.can_refresh and record.status == TokenStatus.ACTIVE:
                        reason = "the access token expired and cannot be refreshed"
                        record.apply_reauthorization_required(ProviderError(reason), now=now, ids=self.ctx.ids)
                        events += record.pull_events()
                        events += await self._mark_connector(uow, record, reason)
                    await uow.tokens.save(record)
                    await uow.outbox.add(events)
                    await uow.commit()
                announced += 1
            except Conflict:
                continue  # changed meanwhile (refreshed, re-authorized): the next sweep decides
        if announced:
            log.info("token expiry announced for %d token(s)", announced)
        return announced

    # -- loop --------------------------------------------------------------------------------

    async def run_once(self, batch_size: int = 100, concurrency: int = 8) -> RefreshReport:
        """One round: refresh due tokens, announce expiries, purge expired OAuth states.
        Failures are logged (never with secrets) and swallowed."""
        report = RefreshReport()
        try:
            report = await self.refresh_due(batch_size, concurrency)
        except Exception as exc:
            _log_round_failure("refresh", exc)
        try:
            await self.sweep_expired()
        except Exception as exc:
            _log_round_failure("expiry sweep", exc)
        if self.states is not None:
            try:
                await self.states.purge_expired(self.ctx.clock.now())
            except Exception as exc:
                _log_round_failure("state purge", exc)
        return report

    async def run_forever(
        self,
        interval: float,
        stop: asyncio.Event,
        *,
        batch_size: int = 100,
        concurrency: int = 8,
    ) -> None:
        """:meth:`run_once` every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            await self.run_once(batch_size, concurrency)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass

    # -- one refresh -------------------------------------------------------------------------

    async def _run(self, record: TokenRecord, lease: Lease) -> _Result:
        """Refresh ``record`` (freshly loaded, under ``lease``) and store the outcome."""
        used = record.tokens.refresh_token
        assert used is not None
        try:
            resolved = await self._resolve(record.org_id, record.connector_key)
        except Unavailable:
            raise
        except RetryableProviderError as exc:
            return await self._record_failure(record, exc)
        except ConnectorManagerError as exc:  # client gone, connector unknown, ...
            return await self._record_failure(record, RetryableProviderError(f"cannot refresh: {exc.message}"))
        policy, lifecycle = self.ctx.policy, self.ctx.lifecycle
        attempt = 1
        while True:
            try:
                # The lease must outlive the call: renew it first, and give the provider at most
                # half of it, so a worker whose lease lapsed never races another with the same
                # refresh token.
                await self.lock.extend(lease, self.lease_ttl)
            except LeaseLost:
                log.warning("refresh lease lost before calling the provider: token=%s", record.id)
                return _Result(RefreshOutcome.SKIPPED)
            try:
                async with asyncio.timeout(self.lease_ttl / 2):
                    response = await self.provider.refresh(resolved.spec, resolved.client, refresh_token=used)
                break
            except TimeoutError:
                return await self._record_failure(
                    record, RetryableProviderError("the provider did not answer within half the refresh lease")
                )
            except ReauthorizationRequired as exc:
                return await self._record_reauth(record, exc)
            except RetryableProviderError as exc:
                delay = lifecycle.retry_delay(attempt, exc.retry_after)
                if attempt >= max(1, policy.attempts) or delay > self.lease_ttl / 2:
                    return await self._record_failure(record, exc)
                log.info(
                    "token refresh attempt %d failed, retrying in %.1fs: token=%s (%s)",
                    attempt,
                    delay,
                    record.id,
                    exc.message,
                )
                await self._sleep(delay)
                try:
                    await self.lock.extend(lease, self.lease_ttl)
                except LeaseLost:
                    log.warning("refresh lease lost while backing off: token=%s", record.id)
                    return _Result(RefreshOutcome.SKIPPED)
                attempt += 1
            except ProviderError as exc:
                return await self._record_failure(
                    record,
                    RetryableProviderError(exc.message, status=exc.status, error_code=exc.error_code),
                )
        return await self._record_success(record, response, resolved)

    async def _record_success(
        self, record: TokenRecord, response: Mapping[str, Any], resolved: ResolvedProvider
    ) -> _Result:
        separator = resolved.spec.scope_separator
        now = self.ctx.clock.now()
        try:
            record.tokens.refreshed(response, now=now, scope_separator=separator)
        except ValidationError:
            failure = RetryableProviderError("the token endpoint answered without an access token")
            return await self._record_failure(record, failure)

        async def apply(uow: UnitOfWork, current: TokenRecord) -> None:
            tokens = current.tokens.refreshed(response, now=now, scope_separator=separator)
            current.apply_refresh(tokens, lifecycle=self.ctx.lifecycle, now=now, ids=self.ctx.ids)
            await uow.tokens.save(current)
            await uow.outbox.add(current.pull_events())

        # A rotated refresh token exists only in this response: keep trying to store it through
        # a storage outage for as long as a lease lasts, not just a few attempts.
        fate, saved = await self._commit(record, apply, persist_seconds=self.lease_ttl)
        if fate == RefreshFate.REVOKE:
            log.warning("refreshed token not stored: the token was revoked meanwhile: token=%s", record.id)
            fresh = record.tokens.refreshed(response, now=now, scope_separator=separator)
            await revoke_at_provider(
                self.provider, resolved.spec, resolved.client, fresh, org_id=record.org_id, key=record.connector_key
            )
            return _Result(RefreshOutcome.SKIPPED)
        if saved is None:
            log.warning("refreshed token dropped: the token was authorized again meanwhile: token=%s", record.id)
            return _Result(RefreshOutcome.SKIPPED)
        if saved.status != TokenStatus.ACTIVE:
            log.warning(
                "token refreshed while it turned %s: stored, status kept: token=%s", saved.status.value, saved.id
            )
        log.debug("token refreshed: token=%s connector=%s", saved.id, saved.connector_key)
        return _Result(RefreshOutcome.REFRESHED, saved)

    async def _record_failure(self, record: TokenRecord, error: RetryableProviderError) -> _Result:
        now = self.ctx.clock.now()

        async def apply(uow: UnitOfWork, current: TokenRecord) -> None:
            current.apply_retryable_failure(error, lifecycle=self.ctx.lifecycle, now=now)
            await uow.tokens.save(current)

        _, saved = await self._commit(record, apply)
        log.warning(
            "token refresh failed, resting the token: token=%s connector=%s (%s)",
            record.id,
            record.connector_key,
            error.message,
        )
        if saved is None:
            return _Result(RefreshOutcome.SKIPPED)
        return _Result(RefreshOutcome.FAILED, saved, error)

    async def _record_reauth(self, record: TokenRecord, error: ReauthorizationRequired) -> _Result:
        now = self.ctx.clock.now()
        reason = f"the provider refused the token refresh ({error.error_code or 'error'}); authorize again"

        async def apply(uow: UnitOfWork, current: TokenRecord) -> None:
            events: list[DomainEvent] = []
            if current.apply_reauthorization_required(error, now=now, ids=self.ctx.ids):
                events += await self._mark_connector(uow, current, reason)
            events += current.pull_events()
            await uow.tokens.save(current)
            await uow.outbox.add(events)

        # Read again first: if another worker rotated the token meanwhile, the refusal was
        # about an outdated refresh token, which is not a failure.
        _, saved = await self._commit(record, apply, reload_first=True)
        if saved is None:
            return _Result(RefreshOutcome.SKIPPED)
        log.warning(
            "token needs re-authorization: token=%s connector=%s (%s)",
            record.id,
            record.connector_key,
            error.error_code or "error",
        )
        return _Result(RefreshOutcome.REAUTH_REQUIRED, saved, error)

    async def _mark_connector(self, uow: UnitOfWork, record: TokenRecord, reason: str) -> list[DomainEvent]:
        connector = await uow.connectors.get(record.org_id, record.connector_key)
        if connector is None:
            return []
        connector.mark_needs_reauthentication(reason, now=self.ctx.clock.now(), ids=self.ctx.ids)
        return await stage_connector(uow, connector, self.ctx)

    async def _commit(
        self, record: TokenRecord, apply: Apply, *, reload_first: bool = False, persist_seconds: float = 0.0
    ) -> tuple[RefreshFate, TokenRecord | None]:
        """Apply and commit; on :class:`Conflict` (or a storage outage) re-read and apply again
        when :meth:`TokenLifecycle.fate_of_refresh` says the result may still be stored. Returns
        that fate and the stored record (None unless STORE). Storage outages are retried
        ``policy.attempts`` times, or for ``persist_seconds`` when that is longer."""
        used = record.tokens.refresh_token
        current: TokenRecord | None = None if reload_first else record
        conflicts = outages = 0
        waited = 0.0
        while True:
            try:
                async with self.ctx.uow() as uow:
                    if current is None:
                        current = await uow.tokens.get(record.id)
                        fate = self.ctx.lifecycle.fate_of_refresh(current, used)
                        if fate != RefreshFate.STORE:
                            return fate, None
                        assert current is not None
                    await apply(uow, current)
                    await uow.commit()
                return RefreshFate.STORE, current
            except Conflict:
                conflicts += 1
                if conflicts >= max(1, self.ctx.conflict_retries):
                    raise
            except Unavailable:
                outages += 1
                if outages >= max(1, self.ctx.policy.attempts) and waited >= persist_seconds:
                    log.error("cannot store the outcome of a token refresh: token=%s", record.id)
                    raise
                delay = min(self.ctx.lifecycle.retry_delay(outages), 5.0)
                await self._sleep(delay)
                waited += delay
            current = None

    # -- leases and loads --------------------------------------------------------------------

    async def _acquire(self, token_id: str, *, wait: bool) -> Lease | None:
        name = f"token-refresh:{token_id}"
        tries = max(1, int(self.lease_wait / _LEASE_POLL_SECONDS)) if wait else 1
        for i in range(tries):
            lease = await self.lock.acquire(name, self.lease_ttl)
            if lease is not None:
                return lease
            if i + 1 < tries:
                await self._sleep(_LEASE_POLL_SECONDS)
        return None

    async def _release(self, lease: Lease) -> None:
        try:
            if not await self.lock.release(lease):
                log.warning("refresh lease had expired before release: %s", lease.name)
        except ConnectorManagerError as exc:
            log.warning("cannot release the refresh lease %s (%s)", lease.name, exc.message)

    async def _load(self, token_id: str) -> TokenRecord | None:
        async with self.ctx.uow() as uow:
            return await uow.tokens.get(token_id)


def _log_round_failure(step: str, exc: Exception) -> None:
    if isinstance(exc, ConnectorManagerError):
        log.warning("token maintenance %s failed (%s: %s)", step, type(exc).__name__, exc.message)
    else:  # an unexpected error: its message might quote data, so only its type is logged
        log.error("token maintenance %s failed unexpectedly (%s)", step, type(exc).__name__)
