"""Real clock and randomness, used by every deployment."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SecureIds:
    def new_id(self) -> str:
        return uuid.uuid4().hex

    def secret_token(self, nbytes: int = 32) -> str:
        return secrets.token_urlsafe(nbytes)


class SystemRandom:
    def __init__(self) -> None:
        self._rng = secrets.SystemRandom()

    def random(self) -> float:
        return self._rng.random()


class ManualClock:
    """A clock that moves only when told (tests, simulations)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
