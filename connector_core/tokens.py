"""Token sets and their lifecycle, sans-I/O.

:class:`TokenLifecycle` decides (is it due? how long to back off? re-authorize?) and
:class:`TokenRecord` applies the decision and records the token event; the application
service performs the I/O. Secret fields are ``repr=False``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from attrs import define, evolve, field, frozen

from connector_core.errors import (
    ProviderError,
    ReauthorizationRequired,
    RetryableProviderError,
    ValidationError,
)
from connector_core.model.events import DomainEvent, TokenEvent, TokenEventType

if TYPE_CHECKING:
    from connector_core.ports.ids import IdSource, RandomSource

__all__ = [
    "REAUTH_ERROR_CODES",
    "RefreshPolicy",
    "TokenLifecycle",
    "TokenRecord",
    "TokenSet",
    "TokenStatus",
    "classify_token_error",
]

#: OAuth ``error`` codes after which retrying cannot help: a person must authorize again.
REAUTH_ERROR_CODES = frozenset(
    {
        "invalid_grant",
        "unauthorized_client",
        "invalid_client",
        "access_denied",
        "token_revoked",
        # Microsoft identity platform: a person must sign in / consent again
        "interaction_required",
        "consent_required",
        "login_required",
        # Slack
        "invalid_refresh_token",
    }
)


def _scopes(raw: Any, separator: str) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if isinstance(raw, str):
        parts = raw.replace(",", " ").split() if separator in (" ", ",") else raw.split(separator)
        return frozenset(p for p in (s.strip() for s in parts) if p)
    if isinstance(raw, Iterable):
        return frozenset(str(s) for s in raw)
    return frozenset()


def _to_frozenset(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


@frozen
class TokenSet:
    """What a token endpoint granted. Secrets never show in ``repr``."""

    access_token: str = field(repr=False)
    obtained_at: datetime
    token_type: str = "Bearer"
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    refresh_token_expires_at: datetime | None = None
    scopes: frozenset[str] = field(factory=frozenset, converter=_to_frozenset)
    id_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_token_response(
        cls,
        data: Mapping[str, Any],
        *,
        now: datetime,
        scope_separator: str = " ",
        requested_scopes: Iterable[str] = (),
    ) -> TokenSet:
        """Build from a token endpoint's JSON. Without ``scope`` the requested scopes were granted
        (RFC 6749 §5.1)."""
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise ValidationError.for_field("access_token", "missing from the token response")
        refresh = data.get("refresh_token")
        expires_in = _seconds(data.get("expires_in"))
        refresh_expires_in = _seconds(data.get("refresh_token_expires_in", data.get("refresh_expires_in")))
        granted = _scopes(data.get("scope"), scope_separator)
        id_token = data.get("id_token")
        return cls(
            access_token=access,
            obtained_at=now,
            token_type=str(data.get("token_type") or "Bearer"),
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=None if expires_in is None else now + timedelta(seconds=expires_in),
            refresh_token_expires_at=(
                None if refresh_expires_in is None else now + timedelta(seconds=refresh_expires_in)
            ),
            scopes=granted or frozenset(requested_scopes),
            id_token=id_token if isinstance(id_token, str) and id_token else None,
        )

    def refreshed(self, data: Mapping[str, Any], *, now: datetime, scope_separator: str = " ") -> TokenSet:
        """Apply a refresh response: keep the old refresh token when none comes back, take the
        rotated one when it does; keep the scopes when the answer names none."""
        new = TokenSet.from_token_response(data, now=now, scope_separator=scope_separator, requested_scopes=self.scopes)
        return evolve(
            new,
            refresh_token=new.refresh_token or self.refresh_token,
            refresh_token_expires_at=(
                new.refresh_token_expires_at if new.refresh_token else self.refresh_token_expires_at
            ),
            id_token=new.id_token or self.id_token,
        )

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @property
    def can_refresh(self) -> bool:
        return self.refresh_token is not None


_MAX_LIFETIME_SECONDS = 100 * 365 * 86400


def _seconds(raw: Any) -> float | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    # negative, NaN, infinite or absurd (over ~100 years) lifetimes mean "unknown"
    return value if 0 <= value <= _MAX_LIFETIME_SECONDS else None


class TokenStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    #: its connector is disabled: not refreshed, not handed out, until it is enabled again
    PAUSED = "PAUSED"
    NEEDS_REAUTHENTICATION = "NEEDS_REAUTHENTICATION"
    REVOKED = "REVOKED"


@frozen
class RefreshPolicy:
    """Knobs of the refresh loop. Defaults: refresh 10 minutes before expiry, spread over up
    to 2 more minutes; 3 attempts per run with exponential backoff; then back off per token
    from 1 minute doubling up to 1 hour."""

    margin: timedelta = timedelta(minutes=10)
    jitter: timedelta = timedelta(minutes=2)
    attempts: int = 3
    retry_base_seconds: float = 1.0
    retry_cap_seconds: float = 30.0
    cooldown_base: timedelta = timedelta(minutes=1)
    cooldown_cap: timedelta = timedelta(hours=1)


def classify_token_error(
    status: int | None, error_code: str | None, *, retry_after: float | None = None
) -> ProviderError:
    """Turn a token endpoint failure into the error the lifecycle acts on.

    Network failure (``status`` None), 5xx and 429 are retryable; ``invalid_grant`` and its kin
    need re-authorization; anything else is a plain :class:`ProviderError`.
    """
    label = error_code or (f"HTTP {status}" if status else "network error")
    if error_code in REAUTH_ERROR_CODES:
        return ReauthorizationRequired(f"provider refused the grant: {label}", status=status, error_code=error_code)
    if status is None or status >= 500 or status == 429:
        return RetryableProviderError(
            f"provider unavailable: {label}",
            status=status,
            error_code=error_code,
            retry_after=retry_after,
        )
    return ProviderError(f"provider error: {label}", status=status, error_code=error_code)


class TokenLifecycle:
    """Decisions about one token set's life. Pure: time and randomness come in."""

    def __init__(self, policy: RefreshPolicy, random: RandomSource) -> None:
        self.policy = policy
        self._random = random

    def refresh_due_at(self, tokens: TokenSet) -> datetime | None:
        """When to refresh: ``margin`` (at most half the lifetime) before expiry, minus jitter.
        ``None`` when the token never expires or cannot be refreshed."""
        if tokens.expires_at is None or not tokens.can_refresh:
            return None
        lifetime = tokens.expires_at - tokens.obtained_at
        margin = min(self.policy.margin, lifetime / 2)
        jitter = min(self.policy.jitter, lifetime / 4) * self._random.random()
        return tokens.expires_at - margin - jitter

    def is_due(self, record: TokenRecord, now: datetime) -> bool:
        if record.status != TokenStatus.ACTIVE or record.refresh_due_at is None:
            return False
        if record.next_attempt_at is not None and record.next_attempt_at > now:
            return False
        return record.refresh_due_at <= now

    def retry_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before in-run attempt ``attempt`` + 1 (attempt counts from 1)."""
        base = min(self.policy.retry_cap_seconds, self.policy.retry_base_seconds * 2 ** (attempt - 1))
        delay: float = base + base * self._random.random()
        return max(delay, float(retry_after or 0.0))

    def cooldown(self, failures: int, retry_after: float | None = None) -> timedelta:
        """How long a token rests after ``failures`` failed runs in a row."""
        # the exponent is capped so a long outage cannot overflow timedelta
        base = self.policy.cooldown_base * (2 ** min(max(0, failures - 1), 30))
        capped: timedelta = min(base, self.policy.cooldown_cap)
        spread: timedelta = capped * (0.5 + 0.5 * self._random.random())
        floor = timedelta(seconds=retry_after or 0)
        return spread if spread > floor else floor


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
        """A refresh succeeded (TOKEN_REFRESHED)."""
        self.tokens = tokens
        self._reset(lifecycle, now)
        self._emit(TokenEventType.REFRESHED, now, ids)

    def apply_retryable_failure(
        self, error: RetryableProviderError, *, lifecycle: TokenLifecycle, now: datetime
    ) -> None:
        """All attempts of a run failed: rest the token, longer each time, up to the cap."""
        self.failure_count += 1
        self.last_error = error.message
        self.next_attempt_at = now + lifecycle.cooldown(self.failure_count, error.retry_after)
        self.updated_at = now

    def apply_reauthorization_required(self, error: ProviderError, *, now: datetime, ids: IdSource) -> None:
        """The grant is dead. Emits TOKEN_REVOKED or TOKEN_EXPIRED once; never retried."""
        if self.status != TokenStatus.ACTIVE:
            return
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

    def _reset(self, lifecycle: TokenLifecycle, now: datetime) -> None:
        self.status = TokenStatus.ACTIVE
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
