"""Storing what one token refresh came to: new tokens, a failure to rest, a dead grant.

A refreshed token is committed before anyone is handed the new access token. Each outcome is
judged against the record as stored when it is committed (:meth:`TokenLifecycle.fate_of_refresh`):
when the commit meets a concurrent change (an expiry notice, a pause) the outcome is applied to
the newer record rather than lost, because the provider has already retired the old refresh
token; when the token was revoked meanwhile, new tokens are revoked at the provider instead.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from attrs import frozen

from connector_core.errors import (
    Conflict,
    ConnectorManagerError,
    LeaseLost,
    ReauthorizationRequired,
    RetryableProviderError,
    Unavailable,
    ValidationError,
)
from connector_core.model.events import DomainEvent
from connector_core.ports.oauth_provider import OAuthProviderClient
from connector_core.ports.unit_of_work import UnitOfWork
from connector_core.services.context import ServiceContext
from connector_core.services.providers import ResolvedProvider
from connector_core.services.revocation import revoke_at_provider
from connector_core.services.staging import mark_needs_reauthentication
from connector_core.services.token_lease import HeldLease
from connector_core.tokens import RefreshFate, TokenRecord, TokenStatus

__all__ = ["RefreshOutcome", "RefreshOutcomes", "RefreshReport", "RefreshResult"]

log = logging.getLogger(__name__)

#: a storage outage is retried at most this long between two attempts
_MAX_STORE_DELAY = 5.0


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
class RefreshResult:
    outcome: RefreshOutcome
    record: TokenRecord | None = None
    error: ConnectorManagerError | None = None


Apply = Callable[[UnitOfWork, TokenRecord], Awaitable[None]]


class RefreshOutcomes:
    """Stores the outcome of a refresh of ``record`` (loaded under ``held``)."""

    def __init__(
        self, ctx: ServiceContext, provider: OAuthProviderClient, sleep: Callable[[float], Awaitable[Any]]
    ) -> None:
        self.ctx = ctx
        self.provider = provider
        self._sleep = sleep

    async def success(
        self, record: TokenRecord, held: HeldLease, response: Mapping[str, Any], resolved: ResolvedProvider
    ) -> RefreshResult:
        separator = resolved.spec.scope_separator
        now = self.ctx.clock.now()
        try:
            fresh = record.tokens.refreshed(response, now=now, scope_separator=separator)
        except ValidationError:
            failure = RetryableProviderError("the token endpoint answered without an access token")
            return await self.failure(record, held, failure)

        async def apply(uow: UnitOfWork, current: TokenRecord) -> None:
            # ``fresh`` unless the record was read again (a conflict, an outage)
            tokens = (
                fresh if current is record else current.tokens.refreshed(response, now=now, scope_separator=separator)
            )
            current.apply_refresh(tokens, lifecycle=self.ctx.lifecycle, now=now, ids=self.ctx.ids)
            current.track_refresh_deadline(resolved.refresh_limits)
            await uow.tokens.save(current)
            await uow.outbox.add(current.pull_events())

        # A rotated refresh token exists only in this response: keep trying to store it through
        # a storage outage for as long as a lease lasts (renewed meanwhile), not just a few attempts.
        fate, saved = await self._commit(record, held, apply, persist_seconds=held.ttl)
        if fate == RefreshFate.REVOKE:
            log.warning("refreshed token not stored: the token was revoked meanwhile: token=%s", record.id)
            await revoke_at_provider(
                self.provider, resolved.spec, resolved.client, fresh, org_id=record.org_id, key=record.connector_key
            )
            return RefreshResult(RefreshOutcome.SKIPPED)
        if saved is None:
            log.warning("refreshed token dropped: the token was authorized again meanwhile: token=%s", record.id)
            return RefreshResult(RefreshOutcome.SKIPPED)
        if saved.status != TokenStatus.ACTIVE:
            log.warning("token refreshed while it turned %s: stored, status kept: token=%s", saved.status, saved.id)
        log.info("token refreshed: token=%s connector=%s", saved.id, saved.connector_key)
        return RefreshResult(RefreshOutcome.REFRESHED, saved)

    async def failure(self, record: TokenRecord, held: HeldLease, error: RetryableProviderError) -> RefreshResult:
        now = self.ctx.clock.now()

        async def apply(uow: UnitOfWork, current: TokenRecord) -> None:
            current.apply_retryable_failure(error, lifecycle=self.ctx.lifecycle, now=now)
            await uow.tokens.save(current)

        _, saved = await self._commit(record, held, apply)
        log.warning(
            "token refresh failed, resting the token: token=%s connector=%s (%s)",
            record.id,
            record.connector_key,
            error.message,
        )
        if saved is None:
            return RefreshResult(RefreshOutcome.SKIPPED)
        return RefreshResult(RefreshOutcome.FAILED, saved, error)

    async def reauthorization_required(
        self, record: TokenRecord, held: HeldLease, error: ReauthorizationRequired
    ) -> RefreshResult:
        now = self.ctx.clock.now()
        reason = f"the provider refused the token refresh ({error.error_code or 'error'}); authorize again"

        async def apply(uow: UnitOfWork, current: TokenRecord) -> None:
            events: list[DomainEvent] = []
            if current.apply_reauthorization_required(error, now=now, ids=self.ctx.ids):
                events += await mark_needs_reauthentication(uow, self.ctx, current, reason)
            events += current.pull_events()
            await uow.tokens.save(current)
            await uow.outbox.add(events)

        # Read again first: if another worker rotated the token meanwhile, the refusal was
        # about an outdated refresh token, which is not a failure.
        _, saved = await self._commit(record, held, apply, reload_first=True)
        if saved is None:
            return RefreshResult(RefreshOutcome.SKIPPED)
        log.warning(
            "token needs re-authorization: token=%s connector=%s (%s)",
            record.id,
            record.connector_key,
            error.error_code or "error",
        )
        return RefreshResult(RefreshOutcome.REAUTH_REQUIRED, saved, error)

    async def _commit(
        self,
        record: TokenRecord,
        held: HeldLease,
        apply: Apply,
        *,
        reload_first: bool = False,
        persist_seconds: float = 0.0,
    ) -> tuple[RefreshFate, TokenRecord | None]:
        """Apply and commit; on :class:`Conflict` (or a storage outage) re-read and apply again
        when :meth:`TokenLifecycle.fate_of_refresh` says the outcome may still be stored.
        Returns that fate and the stored record (None unless STORE).

        Storage outages are retried ``policy.attempts`` times, or for ``persist_seconds`` when
        that is longer, renewing the lease before each wait: while this worker still holds an
        outcome, nobody may send the refresh token it used again. When the lease cannot be
        renewed (taken over, or the lock is unreachable) it stops and raises the outage."""
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
            except Unavailable as outage:
                outages += 1
                if outages >= max(1, self.ctx.policy.attempts) and waited >= persist_seconds:
                    log.error("cannot store the outcome of a token refresh: token=%s", record.id)
                    raise
                try:
                    await held.renew()
                except (LeaseLost, Unavailable) as lost:
                    log.error(
                        "cannot store the outcome of a token refresh, and its lease cannot be held (%s):"
                        " stopping: token=%s",
                        lost.message,
                        record.id,
                    )
                    raise outage from lost
                delay = min(self.ctx.lifecycle.retry_delay(outages), _MAX_STORE_DELAY)
                await self._sleep(delay)
                waited += delay
            current = None
