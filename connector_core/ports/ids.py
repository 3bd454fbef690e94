"""Id and randomness ports, so the core is deterministic under test."""

from __future__ import annotations

from typing import Protocol


class IdSource(Protocol):
    def new_id(self) -> str:
        """A new unique identifier (opaque string, at least 122 random bits)."""
        ...

    def secret_token(self, nbytes: int = 32) -> str:
        """A URL-safe string of ``nbytes`` cryptographically random bytes (state, PKCE)."""
        ...


class RandomSource(Protocol):
    def random(self) -> float:
        """A float in [0, 1) for jitter (not for secrets)."""
        ...
