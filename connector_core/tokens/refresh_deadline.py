"""When a refresh token will die, and when to warn about it. Pure: time comes in.

A refresh token lineage begins when a person authorizes (the provider grants a refresh token);
each refresh that rotates the token continues the lineage. Providers kill lineages in a few
ways, which the catalog declares per provider (:class:`RefreshTokenLimits`):

* **inactivity**: unused for ``max_idle`` (Google: six months; Microsoft and Atlassian: 90 days);
* **lifetime**: ``max_lifetime`` after the lineage began, however often it is used (Atlassian:
  365 days);
* **testing mode**: Google apps whose consent screen is in "testing" get refresh tokens that die
  7 days after consent (``testing_lifetime``, applied when the connector's ``testingMode`` is on);
* **provider**: the token endpoint said so (``refresh_token_expires_in`` / ``refresh_expires_in``).

The deadline is the earliest of these. Warnings come ahead of it at fixed thresholds
(:data:`WARN_BEFORE`: 7 days and 1 day), each announced once per lineage.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from attrs import frozen

from connector_core.errors import ValidationError

__all__ = [
    "WARN_BEFORE",
    "ExpiryBasis",
    "RefreshDeadline",
    "RefreshTokenLimits",
    "RefreshWarning",
    "crossed_thresholds",
    "next_warning_at",
    "refresh_deadline",
    "warning_at",
]

#: how long before a refresh token's deadline a warning goes out; each once per lineage
WARN_BEFORE: tuple[timedelta, ...] = (timedelta(days=7), timedelta(days=1))


class ExpiryBasis(enum.StrEnum):
    """Why the deadline is what it is."""

    PROVIDER = "provider"
    INACTIVITY = "inactivity"
    LIFETIME = "lifetime"
    TESTING_MODE = "testingMode"


class RefreshWarning(enum.StrEnum):
    """How close a refresh token is to its deadline (the API's ``warning`` field)."""

    WITHIN_7_DAYS = "within7Days"
    WITHIN_1_DAY = "within1Day"
    EXPIRED = "expired"


def _days(data: Mapping[str, Any], key: str) -> timedelta | None:
    raw = data.get(key)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= 36500:
        raise ValidationError.for_field(f"refreshTokenLimits.{key}", "must be a number of days between 0 and 36500")
    return timedelta(days=raw)


@frozen
class RefreshTokenLimits:
    """What a provider does to refresh tokens: kill them when unused for ``max_idle``, after
    ``max_lifetime`` from the lineage's start, or (apps in testing mode) after
    ``testing_lifetime``. None: no such limit."""

    max_idle: timedelta | None = None
    max_lifetime: timedelta | None = None
    testing_lifetime: timedelta | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RefreshTokenLimits:
        """From the catalog's ``refreshTokenLimits``: ``maxIdleDays``, ``maxLifetimeDays``,
        ``testingModeLifetimeDays``."""
        if not data:
            return cls()
        return cls(
            max_idle=_days(data, "maxIdleDays"),
            max_lifetime=_days(data, "maxLifetimeDays"),
            testing_lifetime=_days(data, "testingModeLifetimeDays"),
        )

    def applied(self, *, testing_mode: bool) -> RefreshTokenLimits:
        """The limits that hold for one connector: the testing-mode lifetime only when it is on."""
        if testing_mode or self.testing_lifetime is None:
            return self
        return RefreshTokenLimits(max_idle=self.max_idle, max_lifetime=self.max_lifetime)


@frozen
class RefreshDeadline:
    """When a refresh token lineage is expected to die, and why."""

    at: datetime
    basis: ExpiryBasis


def refresh_deadline(
    limits: RefreshTokenLimits,
    *,
    started_at: datetime | None,
    last_used_at: datetime | None,
    reported: datetime | None,
) -> RefreshDeadline | None:
    """The earliest death the limits and the provider's own word foretell; None when nothing
    is known (no lineage, or a provider without limits that said nothing)."""
    candidates: list[RefreshDeadline] = []
    if reported is not None:
        candidates.append(RefreshDeadline(reported, ExpiryBasis.PROVIDER))
    if started_at is not None:
        if limits.testing_lifetime is not None:
            candidates.append(RefreshDeadline(started_at + limits.testing_lifetime, ExpiryBasis.TESTING_MODE))
        if limits.max_lifetime is not None:
            candidates.append(RefreshDeadline(started_at + limits.max_lifetime, ExpiryBasis.LIFETIME))
        if limits.max_idle is not None:
            last = max(started_at, last_used_at) if last_used_at is not None else started_at
            candidates.append(RefreshDeadline(last + limits.max_idle, ExpiryBasis.INACTIVITY))
    # min() keeps the first of equal deadlines: the provider's word, then the fixed limits
    return min(candidates, key=lambda d: d.at, default=None)


def warning_at(deadline: datetime | None, now: datetime) -> RefreshWarning | None:
    """How close ``now`` is to a refresh token's ``deadline``, by the thresholds of :data:`WARN_BEFORE`."""
    if deadline is None:
        return None
    left = deadline - now
    if left <= timedelta(0):
        return RefreshWarning.EXPIRED
    if left <= timedelta(days=1):
        return RefreshWarning.WITHIN_1_DAY
    if left <= timedelta(days=7):
        return RefreshWarning.WITHIN_7_DAYS
    return None


def crossed_thresholds(
    deadline: RefreshDeadline, now: datetime, thresholds: Iterable[timedelta] = WARN_BEFORE
) -> tuple[timedelta, ...]:
    """The thresholds ``now`` has reached (the deadline is at most that far away), tightest first."""
    return tuple(sorted(t for t in thresholds if deadline.at - t <= now))


def next_warning_at(
    deadline: RefreshDeadline | None,
    announced: Iterable[timedelta],
    thresholds: Iterable[timedelta] = WARN_BEFORE,
) -> datetime | None:
    """When the next threshold not yet announced is reached; None when every one was."""
    if deadline is None:
        return None
    done = set(announced)
    moments = [deadline.at - t for t in thresholds if t not in done]
    return min(moments, default=None)
