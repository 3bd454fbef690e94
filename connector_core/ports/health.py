"""Health check port: one per dependency."""

from __future__ import annotations

from typing import Protocol


class HealthCheck(Protocol):
    name: str
    required: bool

    async def check(self) -> bool:
        """A real round trip with a short timeout; True when healthy. Never raises."""
        ...
