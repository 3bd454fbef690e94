"""Decisions about a token's life: when to refresh, how long to back off, and what becomes of
a refresh that finished late. Pure: time and randomness come in."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from attrs import frozen

if TYPE_CHECKING:
    from connector_core.ports.ids import RandomSource
    from connector_core.tokens.record import TokenRecord
    from connector_core.tokens.token_set import TokenSet

__all__ = ["RefreshFate", "RefreshPolicy", "TokenLifecycle", "TokenStatus"]


class TokenStatus(enum.StrEnum):
    """Only ACTIVE tokens are refreshed and handed out."""

    ACTIVE = "ACTIVE"
    #: its connector is disabled: not refreshed, not handed out, until it is enabled again
    PAUSED = "PAUSED"
    #: the provider refused the grant: nothing but a new authorization revives it
    NEEDS_REAUTHENTICATION = "NEEDS_REAUTHENTICATION"
    REVOKED = "REVOKED"


class RefreshFate(enum.StrEnum):
    """What becomes of a refresh result, judged against the record as stored at commit time."""

    #: the record still holds the refresh token that was used: store the new material
    STORE = "store"
    #: re-authorized meanwhile: the result belongs to an older grant. It is not revoked (at
    #: Google revoking any token of a grant revokes the whole grant, the new tokens included)
    DROP = "drop"
    #: revoked or removed meanwhile: never store or serve the new tokens; revoke them
    REVOKE = "revoke"


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

    @staticmethod
    def fate_of_refresh(stored: TokenRecord | None, used_refresh_token: str | None) -> RefreshFate:
        """The one rule for a refresh result meeting the record as it is stored now.

        The version check alone is not enough: a conflict only says *something* changed. The
        refresh token is the fence: while the stored record holds the one that was used, no
        newer grant or rotation has replaced it."""
        if stored is None or stored.status == TokenStatus.REVOKED:
            return RefreshFate.REVOKE
        if stored.tokens.refresh_token != used_refresh_token:
            return RefreshFate.DROP
        return RefreshFate.STORE

    @staticmethod
    def status_after_client_change(status: TokenStatus) -> TokenStatus:
        """The one rule for a token whose connector changed its OAuth client (id, secret,
        endpoints). A token belongs to the client it was issued to: the new client can neither
        refresh it nor vouch for it, so a live token (ACTIVE, PAUSED) needs a new authorization.
        REVOKED and NEEDS_REAUTHENTICATION stay as they are."""
        if status in (TokenStatus.ACTIVE, TokenStatus.PAUSED):
            return TokenStatus.NEEDS_REAUTHENTICATION
        return status

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
