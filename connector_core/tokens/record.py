"""The stored token of one connector, with its refresh bookkeeping and status rules."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from attrs import define, field

from connector_core.errors import DomainRuleViolation, ProviderError, RetryableProviderError
from connector_core.model.events import DomainEvent, TokenEvent, TokenEventType
from connector_core.tokens.lifecycle import TokenLifecycle, TokenStatus
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
