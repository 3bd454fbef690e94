"""In-memory storage: connectors, tokens, outbox, OAuth state behind one lock.

Product code, not a test double: safe under concurrent async (and threaded) use, raising
the same errors as the real adapters. Objects are stored as documents (copies), so callers
never share mutable state with the store.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from adapters.codec import (
    connector_from_doc,
    connector_to_doc,
    event_from_doc,
    event_to_doc,
    make_json_converter,
    pending_from_doc,
    pending_to_doc,
)
from adapters.unit_of_work_base import Batch, BufferedUnitOfWork, Op
from connector_core.errors import Conflict, UnknownEvent
from connector_core.model.connector import Connector
from connector_core.ports.oauth_state import PendingAuthorization
from connector_core.ports.outbox import OutboxBacklog, OutboxMessage
from connector_core.tokens import CensusTally, TokenCensus, TokenRecord, TokenStatus, TokenSummary, token_state
from connector_core.tokens.refresh_deadline import warning_at


class MemoryStorage:
    """The shared state; create one per application (or per test)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.conv = make_json_converter()
        self.connectors: dict[tuple[str, str], dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.outbox: list[tuple[int, dict[str, Any], bool]] = []
        #: seq → reason of the outbox messages the broker refused for good (done, never pruned as published)
        self.set_aside: dict[int, str] = {}
        self.seq = 0
        self.states: dict[str, dict[str, Any]] = {}
        #: commits so far, in all and per org whose connectors or tokens they changed
        self.version = 0
        self.org_versions: dict[str, int] = {}

    def unit_of_work(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self)

    # token records are kept as structured docs; material is in the same dict (no disk)
    def _token(self, doc: dict[str, Any]) -> TokenRecord:
        return self.conv.structure(dict(doc), TokenRecord)


class MemoryUnitOfWork(BufferedUnitOfWork):
    def __init__(self, storage: MemoryStorage) -> None:
        super().__init__()
        self._s = storage

    async def _load_connector(self, org_id: str, key: str) -> Connector | None:
        with self._s.lock:
            doc = self._s.connectors.get((org_id, key))
            return None if doc is None else connector_from_doc(self._s.conv, doc)

    async def _list_connectors(self, org_id: str) -> Sequence[Connector]:
        with self._s.lock:
            docs = [d for (org, _), d in self._s.connectors.items() if org == org_id]
            return [connector_from_doc(self._s.conv, d) for d in docs]

    async def _load_token(self, token_id: str) -> TokenRecord | None:
        with self._s.lock:
            doc = self._s.tokens.get(token_id)
            return None if doc is None else self._s._token(doc)

    async def _load_token_for_connector(self, org_id: str, connector_key: str) -> TokenRecord | None:
        with self._s.lock:
            for doc in self._s.tokens.values():
                if (doc["org_id"], doc["connector_key"]) == (org_id, connector_key):
                    return self._s._token(doc)
            return None

    async def _tokens_due(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        with self._s.lock:
            records = [self._s._token(d) for d in self._s.tokens.values()]
        due = [
            r
            for r in records
            if r.status == TokenStatus.ACTIVE
            and r.refresh_due_at is not None
            and r.refresh_due_at <= moment
            and (r.next_attempt_at is None or r.next_attempt_at <= moment)
        ]
        due.sort(key=lambda r: (r.refresh_due_at or moment, r.id))
        return due[:limit]

    async def _tokens_expired(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        with self._s.lock:
            records = [self._s._token(d) for d in self._s.tokens.values()]
        found = [
            r
            for r in records
            if not r.expiry_notified
            and r.status != TokenStatus.REVOKED
            and r.tokens.expires_at is not None
            and r.tokens.expires_at <= moment
        ]
        found.sort(key=lambda r: (r.tokens.expires_at or moment, r.id))
        return found[:limit]

    async def _tokens_warn_due(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        with self._s.lock:
            records = [self._s._token(d) for d in self._s.tokens.values()]
        found = [
            r
            for r in records
            if r.status in (TokenStatus.ACTIVE, TokenStatus.PAUSED)
            and r.refresh_warn_at is not None
            and r.refresh_warn_at <= moment
        ]
        found.sort(key=lambda r: (r.refresh_warn_at or moment, r.id))
        return found[:limit]

    async def _token_summaries(self, org_id: str) -> Sequence[TokenSummary]:
        with self._s.lock:
            records = [self._s._token(d) for d in self._s.tokens.values() if d["org_id"] == org_id]
        return [r.summary() for r in records]

    async def _token_census(self, now: datetime) -> TokenCensus:
        with self._s.lock:
            records = [self._s._token(d) for d in self._s.tokens.values()]
        tally = CensusTally()
        for r in records:
            tally.state(r.connector_key, token_state(r.status, r.refresh_due_at, r.next_attempt_at, now))
            if r.status == TokenStatus.ACTIVE:
                tally.expiry(r.connector_key, r.tokens.expires_at)
            if r.status in (TokenStatus.ACTIVE, TokenStatus.PAUSED):
                tally.warning(r.connector_key, warning_at(r.refresh_deadline, now))
        return tally.census()

    async def _apply(self, batch: Batch) -> None:
        s = self._s
        with s.lock:
            for sc in batch.connectors:
                current = s.connectors.get((sc.connector.org_id, sc.connector.key))
                # like the real stores: only an ADD may find nothing there
                if (current is None and sc.op is not Op.ADD) or (
                    (current["version"] if current else 0) != sc.expected_version
                ):
                    raise Conflict(f"connector {sc.connector.key} was changed by someone else; retry")
            for st in batch.tokens:
                current = s.tokens.get(st.record.id)
                if (current is None and st.op is not Op.ADD) or (
                    (current["version"] if current else 0) != st.expected_version
                ):
                    raise Conflict("token record was changed by someone else; retry")
                if st.op is Op.ADD and any(
                    (d["org_id"], d["connector_key"]) == (st.record.org_id, st.record.connector_key)
                    for d in s.tokens.values()
                ):
                    raise Conflict("this connector already has a token record")
            for sc in batch.connectors:
                doc = connector_to_doc(s.conv, sc.connector)
                doc["version"] = sc.expected_version + 1
                s.connectors[(sc.connector.org_id, sc.connector.key)] = doc
            for st in batch.tokens:
                if st.op is Op.DELETE:
                    s.tokens.pop(st.record.id, None)
                    continue
                tdoc: dict[str, Any] = s.conv.unstructure(st.record)
                tdoc["version"] = st.expected_version + 1
                s.tokens[st.record.id] = tdoc
            for event in batch.events:
                s.seq += 1
                s.outbox.append((s.seq, event_to_doc(s.conv, event), False))
            s.version += 1
            for org in {sc.connector.org_id for sc in batch.connectors} | {st.record.org_id for st in batch.tokens}:
                s.org_versions[org] = s.org_versions.get(org, 0) + 1


class MemoryChangeStamp:
    """The change stamp of a :class:`MemoryStorage` (its commit counters)."""

    def __init__(self, storage: MemoryStorage) -> None:
        self._s = storage

    def store_version(self) -> int | None:
        return self._s.version

    def org_version(self, org_id: str) -> int | None:
        return self._s.org_versions.get(org_id, 0)

    def close(self) -> None:
        pass


class MemoryOutboxReader:
    def __init__(self, storage: MemoryStorage) -> None:
        self._s = storage

    async def pending(self, limit: int, *, beyond: Sequence[OutboxMessage] = ()) -> Sequence[OutboxMessage]:
        skip = {m.seq for m in beyond}
        with self._s.lock:
            rows = [(seq, doc) for seq, doc, done in self._s.outbox if not done and seq not in skip][:limit]
        return [OutboxMessage(seq, event_from_doc(self._s.conv, doc)) for seq, doc in rows]

    async def mark_published(self, seqs: Sequence[int]) -> None:
        wanted = set(seqs)
        with self._s.lock:
            self._s.outbox = [(seq, doc, done or seq in wanted) for seq, doc, done in self._s.outbox]

    async def backlog(self) -> OutboxBacklog:
        with self._s.lock:
            times = [doc["occurred_at"] for _, doc, done in self._s.outbox if not done]
        oldest = min((self._s.conv.structure(t, datetime) for t in times), default=None)
        return OutboxBacklog(len(times), oldest)

    async def set_aside(self, reasons: Mapping[int, str]) -> None:
        with self._s.lock:
            stored = {seq for seq, _, _ in self._s.outbox}
            self._s.set_aside.update({seq: why for seq, why in reasons.items() if seq in stored})
            self._s.outbox = [(seq, doc, done or seq in reasons) for seq, doc, done in self._s.outbox]

    async def set_aside_count(self) -> int:
        with self._s.lock:
            return len(self._s.set_aside)

    async def recent(self, limit: int, *, org_id: str | None = None) -> Sequence[OutboxMessage]:
        with self._s.lock:
            mine = [(seq, doc) for seq, doc, _ in self._s.outbox if org_id is None or doc["org_id"] == org_id]
            rows = mine[-limit:] if limit else []
        return [OutboxMessage(seq, event_from_doc(self._s.conv, doc)) for seq, doc in rows]

    async def after(self, event_id: str, limit: int, *, org_id: str | None = None) -> Sequence[OutboxMessage]:
        with self._s.lock:
            mine = [(seq, doc) for seq, doc, _ in self._s.outbox if org_id is None or doc["org_id"] == org_id]
            start = next((i for i, (_, doc) in enumerate(mine) if doc["event_id"] == event_id), None)
            if start is None:
                raise UnknownEvent.for_id(event_id)
            rows = mine[start + 1 : start + 1 + limit]
        return [OutboxMessage(seq, event_from_doc(self._s.conv, doc)) for seq, doc in rows]

    async def resume_point(
        self, page: Sequence[OutboxMessage], *, after: str | None, org_id: str | None = None
    ) -> str | None:
        """The last message of ``page``: the order is commit order, so nothing can land before it."""
        return page[-1].event.event_id if page else after

    async def prune(self, keep: int, *, published_only: bool) -> int:
        with self._s.lock:
            if not self._s.outbox:
                return 0
            cutoff = self._s.outbox[-1][0] - max(0, keep)
            aside = self._s.set_aside
            kept = [
                row for row in self._s.outbox if row[0] > cutoff or (published_only and (not row[2] or row[0] in aside))
            ]
            removed = len(self._s.outbox) - len(kept)
            self._s.outbox = kept
            still = {row[0] for row in kept}
            self._s.set_aside = {seq: why for seq, why in aside.items() if seq in still}
            return removed


class MemoryOAuthStateStore:
    def __init__(self, storage: MemoryStorage) -> None:
        self._s = storage

    async def put(self, pending: PendingAuthorization) -> None:
        with self._s.lock:
            self._s.states[pending.state_hash] = pending_to_doc(self._s.conv, pending)

    async def take(self, state_hash: str) -> PendingAuthorization | None:
        with self._s.lock:
            doc = self._s.states.pop(state_hash, None)
        return None if doc is None else pending_from_doc(self._s.conv, doc)

    async def purge_expired(self, moment: datetime) -> int:
        with self._s.lock:
            dead = [k for k, d in self._s.states.items() if pending_from_doc(self._s.conv, d).expires_at < moment]
            for k in dead:
                del self._s.states[k]
        return len(dead)
