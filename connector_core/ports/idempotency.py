"""Idempotency store port: the answer to a state-changing request, kept under the caller's
``Idempotency-Key`` (per org), so that a retry gets the first answer instead of acting twice.

A request first *claims* its key; while it runs, a second request with the key is told it is
in progress; when it succeeded, its answer is *completed* into the record and kept for a day;
when it failed, the claim is *released* and a retry runs again. A claim that is never
completed or released (the process died) expires on its own."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from attrs import frozen


@frozen
class StoredAnswer:
    """What the first request answered."""

    status: int
    body: bytes


@frozen
class IdempotencyRecord:
    """One key's record. ``fingerprint`` identifies the request (method, path and body) without
    holding it; ``claim_id`` identifies the claim that owns the record."""

    fingerprint: str
    claim_id: str
    expires_at: datetime
    #: None while the claiming request is still running
    answer: StoredAnswer | None = None


class IdempotencyStore(Protocol):
    async def claim(
        self, org_id: str, key: str, *, fingerprint: str, claim_id: str, now: datetime, until: datetime
    ) -> IdempotencyRecord | None:
        """Atomically claim ``(org_id, key)`` until ``until``: None when this call claimed it (no
        record, or only one that expired before ``now``); otherwise the live record found, left
        as it is. Of concurrent claims of one key, from any process, exactly one gets None."""
        ...

    async def complete(self, org_id: str, key: str, *, claim_id: str, answer: StoredAnswer, until: datetime) -> bool:
        """Store the answer in the record of claim ``claim_id``, kept until ``until``; False (and
        nothing changed) when the record is no longer that claim's."""
        ...

    async def release(self, org_id: str, key: str, *, claim_id: str) -> None:
        """Drop the record while claim ``claim_id`` still owns it and holds no answer (a retry
        then runs again); anything else is left alone."""
        ...

    async def purge_expired(self, moment: datetime) -> int:
        """Delete the records that expired before ``moment``; how many."""
        ...
