"""Idempotency records in this process (product code: the same rules as the stored ones)."""

from __future__ import annotations

import threading
from datetime import datetime

from attrs import evolve

from connector_core.ports.idempotency import IdempotencyRecord, StoredAnswer

#: expired records are swept on a claim once this many claims have been made since the last sweep
_SWEEP_EVERY = 256


class MemoryIdempotencyStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], IdempotencyRecord] = {}
        self._claims_since_sweep = 0

    async def claim(
        self, org_id: str, key: str, *, fingerprint: str, claim_id: str, now: datetime, until: datetime
    ) -> IdempotencyRecord | None:
        with self._lock:
            self._claims_since_sweep += 1
            if self._claims_since_sweep >= _SWEEP_EVERY:
                self._sweep(now)
            found = self._records.get((org_id, key))
            if found is not None and found.expires_at >= now:
                return found
            self._records[(org_id, key)] = IdempotencyRecord(fingerprint, claim_id, until)
            return None

    async def complete(self, org_id: str, key: str, *, claim_id: str, answer: StoredAnswer, until: datetime) -> bool:
        with self._lock:
            found = self._records.get((org_id, key))
            if found is None or found.claim_id != claim_id:
                return False
            self._records[(org_id, key)] = evolve(found, answer=answer, expires_at=until)
            return True

    async def release(self, org_id: str, key: str, *, claim_id: str) -> None:
        with self._lock:
            found = self._records.get((org_id, key))
            if found is not None and found.claim_id == claim_id and found.answer is None:
                del self._records[(org_id, key)]

    async def purge_expired(self, moment: datetime) -> int:
        with self._lock:
            return self._sweep(moment)

    def _sweep(self, moment: datetime) -> int:
        self._claims_since_sweep = 0
        expired = [k for k, r in self._records.items() if r.expires_at < moment]
        for k in expired:
            del self._records[k]
        return len(expired)
