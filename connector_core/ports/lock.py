"""Lease lock port: time-bounded ownership with a fencing token."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from attrs import frozen


@frozen
class Lease:
    name: str
    owner: str
    fencing_token: int
    expires_at: datetime


class LeaseLock(Protocol):
    async def acquire(self, name: str, ttl_seconds: float) -> Lease | None:
        """Take the lease if free or expired; None when someone else holds it. Each successful
        acquire gets a fencing token greater than every earlier one for that name."""
        ...

    async def release(self, lease: Lease) -> bool:
        """Release only if still ours (compare-and-delete); False when it was lost."""
        ...

    async def extend(self, lease: Lease, ttl_seconds: float) -> Lease:
        """Extend if still ours, else :class:`LeaseLost`."""
        ...
