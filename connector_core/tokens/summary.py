"""What can be said about stored tokens without opening their material: one token
(:class:`TokenSummary`, for lists) and all of them (:class:`TokenCensus`, for metrics)."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from attrs import field, frozen

from connector_core.tokens.lifecycle import TokenStatus
from connector_core.tokens.refresh_deadline import (
    RefreshDeadline,
    RefreshTokenLimits,
    RefreshWarning,
    refresh_deadline,
)

__all__ = ["CensusTally", "TokenCensus", "TokenState", "TokenSummary", "token_state"]


@frozen
class TokenSummary:
    """A stored token's bookkeeping, without its material (nothing is decrypted to list it)."""

    id: str
    org_id: str
    connector_key: str
    status: TokenStatus
    #: when the current access token was granted (the last refresh or authorization)
    obtained_at: datetime
    expires_at: datetime | None
    refresh_due_at: datetime | None
    next_attempt_at: datetime | None
    failure_count: int
    lineage_started_at: datetime | None
    refresh_last_used_at: datetime | None
    #: what the provider said about the refresh token's life, if anything
    refresh_token_expires_at: datetime | None
    updated_at: datetime

    def deadline_under(self, limits: RefreshTokenLimits) -> RefreshDeadline | None:
        """When this lineage's refresh token is expected to die under ``limits``."""
        return refresh_deadline(
            limits,
            started_at=self.lineage_started_at,
            last_used_at=self.refresh_last_used_at,
            reported=self.refresh_token_expires_at if self.lineage_started_at else None,
        )


class TokenState(enum.StrEnum):
    """A token as an operator counts it (the ``state`` label of the token metrics)."""

    ACTIVE = "active"
    #: ACTIVE and due for a refresh now
    DUE = "due"
    #: ACTIVE, resting after failed refreshes
    RESTING = "resting"
    NEEDS_REAUTH = "needs_reauth"
    PAUSED = "paused"
    REVOKED = "revoked"


_BY_STATUS = {
    TokenStatus.PAUSED: TokenState.PAUSED,
    TokenStatus.NEEDS_REAUTHENTICATION: TokenState.NEEDS_REAUTH,
    TokenStatus.REVOKED: TokenState.REVOKED,
}


def token_state(
    status: TokenStatus, refresh_due_at: datetime | None, next_attempt_at: datetime | None, now: datetime
) -> TokenState:
    """The one rule every store's census follows (the SQL and MongoDB ones spell it out)."""
    if status != TokenStatus.ACTIVE:
        return _BY_STATUS[status]
    if next_attempt_at is not None and next_attempt_at > now:
        return TokenState.RESTING
    if refresh_due_at is not None and refresh_due_at <= now:
        return TokenState.DUE
    return TokenState.ACTIVE


@frozen
class TokenCensus:
    """Every stored token counted, per connector key (a bounded set: the catalog's keys)."""

    #: (connector key, state) → how many tokens
    states: Mapping[tuple[str, TokenState], int] = field(factory=dict)
    #: connector key → the soonest access-token expiry among its ACTIVE tokens
    soonest_expiry: Mapping[str, datetime] = field(factory=dict)
    #: (connector key, warning) → live (ACTIVE, PAUSED) tokens whose refresh token is that close to its deadline
    expiring: Mapping[tuple[str, RefreshWarning], int] = field(factory=dict)


class CensusTally:
    """Builds a :class:`TokenCensus` from records (in memory) or from aggregated rows (SQL, MongoDB)."""

    def __init__(self) -> None:
        self._states: Counter[tuple[str, TokenState]] = Counter()
        self._soonest: dict[str, datetime] = {}
        self._expiring: Counter[tuple[str, RefreshWarning]] = Counter()

    def state(self, key: str, state: TokenState, count: int = 1) -> None:
        self._states[(key, state)] += count

    def expiry(self, key: str, expires_at: datetime | None) -> None:
        """An ACTIVE token's access-token expiry (the soonest per key is kept)."""
        if expires_at is not None and (key not in self._soonest or expires_at < self._soonest[key]):
            self._soonest[key] = expires_at

    def warning(self, key: str, warning: RefreshWarning | None, count: int = 1) -> None:
        if warning is not None:
            self._expiring[(key, warning)] += count

    def census(self) -> TokenCensus:
        return TokenCensus(
            states=MappingProxyType(dict(self._states)),
            soonest_expiry=MappingProxyType(dict(self._soonest)),
            expiring=MappingProxyType(dict(self._expiring)),
        )
