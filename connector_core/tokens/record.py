"""The stored token of one connector, with its refresh bookkeeping and status rules."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from attrs import define, field

from connector_core.errors import DomainRuleViolation, ProviderError, RetryableProviderError
from connector_core.model.events import DomainEvent, RefreshTokenExpiring, TokenEvent, TokenEventType
from connector_core.tokens.lifecycle import TokenLifecycle, TokenStatus
from connector_core.tokens.refresh_deadline import (
    RefreshDeadline,
    RefreshTokenLimits,
    crossed_thresholds,
    next_warning_at,
)
from connector_core.tokens.summary import TokenSummary
from connector_core.tokens.token_set import TokenSet

if TYPE_CHECKING:
    from connector_core.ports.ids import IdSource

__all__ = ["TokenRecord"]


@define
class TokenRecord:
    """The stored token of one connector of one org, with its refresh bookkeeping."""

    id: str
    org_id: str
    connector_key: str
    account_id: str
    service_type: str
    tokens: TokenSet
    status: TokenStatus
    refresh_due_at: datetime | None
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = None
    failure_count: int = 0
    last_error: str | None = None
    expiry_notified: bool = False
    #: when this refresh-token lineage began (an authorization); None without a refresh token
    lineage_started_at: datetime | None = None
    #: when the provider last accepted this lineage's refresh token (a refresh)
    refresh_last_used_at: datetime | None = None
    #: when the lineage is expected to die (:meth:`track_refresh_deadline`); queryable
    refresh_deadline: datetime | None = None
    #: when the next TOKEN_EXPIRING of this lineage is due; queryable, None when none is
    refresh_warn_at: datetime | None = None
    #: the thresholds (seconds before the deadline) this lineage has announced
    expiring_announced: tuple[int, ...] = ()
    version: int = 0
    events: list[DomainEvent] = field(factory=list, eq=False, repr=False)

    @classmethod
    def create(
        cls,
        *,
        token_id: str,
        org_id: str,
        connector_key: str,
        account_id: str,
        service_type: str,
        tokens: TokenSet,
        lifecycle: TokenLifecycle,
        now: datetime,
        ids: IdSource,
    ) -> TokenRecord:
        record = cls(
            id=token_id,
            org_id=org_id,
            connector_key=connector_key,
            account_id=account_id,
            service_type=service_type,
            tokens=tokens,
            status=TokenStatus.ACTIVE,
            refresh_due_at=lifecycle.refresh_due_at(tokens),
            created_at=now,
            updated_at=now,
        )
        record._begin_lineage(now)
        record._emit(TokenEventType.CREATED, now, ids)
        return record

    def replace_tokens(
        self,
        tokens: TokenSet,
        *,
        lifecycle: TokenLifecycle,
        now: datetime,
        ids: IdSource,
        account_id: str | None = None,
    ) -> None:
        """A new authorization replaced the tokens (TOKEN_CREATED)."""
        self.tokens = tokens
        self.account_id = account_id or self.account_id
        self._reset(lifecycle, now)
        self._begin_lineage(now)
        self._emit(TokenEventType.CREATED, now, ids)

    def apply_refresh(self, tokens: TokenSet, *, lifecycle: TokenLifecycle, now: datetime, ids: IdSource) -> None:
        """A refresh succeeded. The material is always kept (the provider retired the refresh
        token used); the status a person or the provider set while it ran stays:

        * ACTIVE: refresh bookkeeping reset, TOKEN_REFRESHED;
        * PAUSED: stays paused (not refreshed, not served), TOKEN_REFRESHED;
        * NEEDS_REAUTHENTICATION: stays, bookkeeping untouched, no event (one terminal event);
        * REVOKED: refused with :class:`DomainRuleViolation` (see :meth:`TokenLifecycle.fate_of_refresh`).
        """
        if self.status == TokenStatus.REVOKED:
            raise DomainRuleViolation("a revoked token cannot take refreshed material")
        self.tokens = tokens
        self.refresh_last_used_at = now  # a rotation continues the lineage
        if self.status == TokenStatus.NEEDS_REAUTHENTICATION:
            self.updated_at = now
            return
        self._reset(lifecycle, now, status=self.status)
        self._emit(TokenEventType.REFRESHED, now, ids)

    def apply_retryable_failure(
        self, error: RetryableProviderError, *, lifecycle: TokenLifecycle, now: datetime
    ) -> None:
        """All attempts of a run failed: rest the token, longer each time, up to the cap."""
        self.failure_count += 1
        self.last_error = error.message
        self.next_attempt_at = now + lifecycle.cooldown(self.failure_count, error.retry_after)
        self.updated_at = now

    def apply_reauthorization_required(self, error: ProviderError, *, now: datetime, ids: IdSource) -> bool:
        """The grant is dead. Emits TOKEN_REVOKED or TOKEN_EXPIRED once; never retried. Only an
        ACTIVE token takes the verdict (True when it did): a paused one is judged when resumed."""
        if self.status != TokenStatus.ACTIVE:
            return False
        self.status = TokenStatus.NEEDS_REAUTHENTICATION
        self.last_error = error.message
        self.failure_count += 1
        self.next_attempt_at = None
        self.updated_at = now
        revoked = error.error_code in {"token_revoked", "access_denied"}
        if revoked:
            self.expiry_notified = True  # one terminal event: no TOKEN_EXPIRED after this
            self._emit(TokenEventType.REVOKED, now, ids)
        elif not self.expiry_notified:
            self.expiry_notified = True
            self._emit(TokenEventType.EXPIRED, now, ids)
        return True

    def apply_client_change(self, reason: str, *, now: datetime, ids: IdSource) -> bool:
        """Its connector's OAuth client changed (:meth:`TokenLifecycle.status_after_client_change`):
        a live token needs a new authorization, announced with TOKEN_EXPIRED once. True when the
        status changed."""
        status = TokenLifecycle.status_after_client_change(self.status)
        if status == self.status:
            return False
        self.status = status
        self.last_error = reason
        self.next_attempt_at = None
        self.updated_at = now
        if not self.expiry_notified:
            self.expiry_notified = True  # one terminal event per grant
            self._emit(TokenEventType.EXPIRED, now, ids)
        return True

    def follow_connector(self, enabled: bool, *, lifecycle: TokenLifecycle, now: datetime) -> bool:
        """Pause or resume with the connector's enabled state; True when the status changed."""
        return self.resume(lifecycle=lifecycle, now=now) if enabled else self.pause(now=now)

    def pause(self, *, now: datetime) -> bool:
        """The connector was disabled: stop refreshing (no event; the connector announced it)."""
        if self.status != TokenStatus.ACTIVE:
            return False
        self.status = TokenStatus.PAUSED
        self.updated_at = now
        return True

    def resume(self, *, lifecycle: TokenLifecycle, now: datetime) -> bool:
        """The connector was enabled again: refresh on schedule (at once when already due)."""
        if self.status != TokenStatus.PAUSED:
            return False
        self.status = TokenStatus.ACTIVE
        self.refresh_due_at = lifecycle.refresh_due_at(self.tokens)
        self.next_attempt_at = None
        self.updated_at = now
        return True

    def revoke(self, *, now: datetime, ids: IdSource) -> None:
        self.status = TokenStatus.REVOKED
        self.refresh_due_at = None
        self.next_attempt_at = None
        self.updated_at = now
        self._emit(TokenEventType.REVOKED, now, ids)

    def check_expiry(self, *, now: datetime, ids: IdSource) -> bool:
        """Emit TOKEN_EXPIRED once when the access token expired without a refresh."""
        if self.expiry_notified or self.status == TokenStatus.REVOKED:
            return False
        if not self.tokens.is_expired(now):
            return False
        self.expiry_notified = True
        self.updated_at = now
        self._emit(TokenEventType.EXPIRED, now, ids)
        return True

    # -- refresh-token lineage ------------------------------------------------------------------

    def summary(self) -> TokenSummary:
        """The record without its material."""
        return TokenSummary(
            id=self.id,
            org_id=self.org_id,
            connector_key=self.connector_key,
            status=self.status,
            obtained_at=self.tokens.obtained_at,
            expires_at=self.tokens.expires_at,
            refresh_due_at=self.refresh_due_at,
            next_attempt_at=self.next_attempt_at,
            failure_count=self.failure_count,
            lineage_started_at=self.lineage_started_at,
            refresh_last_used_at=self.refresh_last_used_at,
            refresh_token_expires_at=self.tokens.refresh_token_expires_at,
            updated_at=self.updated_at,
        )

    def deadline_under(self, limits: RefreshTokenLimits) -> RefreshDeadline | None:
        """When this lineage's refresh token is expected to die under ``limits``."""
        return self.summary().deadline_under(limits)

    def track_refresh_deadline(self, limits: RefreshTokenLimits) -> bool:
        """Store the deadline under ``limits`` and when the next warning is due (both queried
        by the warning sweep and the metrics); True when either changed."""
        if self.lineage_started_at is None and self.tokens.can_refresh:
            self.lineage_started_at = self.created_at  # a record stored before lineages were kept
        deadline = self.deadline_under(limits)
        at = None if deadline is None else deadline.at
        warn_at = next_warning_at(deadline, self._announced())
        changed = (at, warn_at) != (self.refresh_deadline, self.refresh_warn_at)
        self.refresh_deadline, self.refresh_warn_at = at, warn_at
        return changed

    def announce_expiring(self, limits: RefreshTokenLimits, *, now: datetime, ids: IdSource) -> bool:
        """TOKEN_EXPIRING when ``now`` reached a warning threshold this lineage has not announced:
        one event naming the tightest threshold reached, and every reached one marked announced,
        so each threshold goes out once per lineage. Only live tokens (ACTIVE, PAUSED) warn."""
        self.track_refresh_deadline(limits)
        deadline = self.deadline_under(limits)
        if deadline is None or self.status not in (TokenStatus.ACTIVE, TokenStatus.PAUSED):
            return False
        announced = self._announced()
        reached = [t for t in crossed_thresholds(deadline, now) if t not in announced]
        if not reached:
            return False
        seconds = {int(t.total_seconds()) for t in reached}
        self.expiring_announced = tuple(sorted({*self.expiring_announced, *seconds}))
        self.refresh_warn_at = next_warning_at(deadline, self._announced())
        self.updated_at = now
        self.events.append(
            RefreshTokenExpiring(
                event_id=ids.new_id(),
                occurred_at=now,
                org_id=self.org_id,
                connector_key=self.connector_key,
                token_reference_id=self.id,
                service_type=self.service_type,
                account_id=self.account_id,
                refresh_token_expires_at=deadline.at,
                expires_because=str(deadline.basis),
                warn_before_seconds=min(seconds),
            )
        )
        return True

    def _announced(self) -> set[timedelta]:
        return {timedelta(seconds=s) for s in self.expiring_announced}

    def _begin_lineage(self, now: datetime) -> None:
        """An authorization starts a new lineage (when it granted a refresh token); its deadline
        is set by :meth:`track_refresh_deadline`."""
        self.lineage_started_at = now if self.tokens.can_refresh else None
        self.refresh_last_used_at = None
        self.refresh_deadline = None
        self.refresh_warn_at = None
        self.expiring_announced = ()

    def pull_events(self) -> list[DomainEvent]:
        events, self.events = self.events, []
        return events

    def _reset(self, lifecycle: TokenLifecycle, now: datetime, *, status: TokenStatus = TokenStatus.ACTIVE) -> None:
        self.status = status
        self.refresh_due_at = lifecycle.refresh_due_at(self.tokens)
        self.next_attempt_at = None
        self.failure_count = 0
        self.last_error = None
        self.expiry_notified = False
        self.updated_at = now

    def _emit(self, kind: TokenEventType, now: datetime, ids: IdSource) -> None:
        self.events.append(
            TokenEvent(
                event_id=ids.new_id(),
                occurred_at=now,
                org_id=self.org_id,
                connector_key=self.connector_key,
                token_event_type=kind,
                token_reference_id=self.id,
                service_type=self.service_type,
                account_id=self.account_id,
            )
        )
