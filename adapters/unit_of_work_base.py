"""The staging half of a unit of work, shared by every storage adapter.

Writes are staged in memory and handed to :meth:`BufferedUnitOfWork._apply` at commit as
one batch; the adapter writes the batch atomically with version checks (optimistic
concurrency). Nothing is locked while the caller works, so a unit of work may span awaits.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType

from attrs import define, field

from connector_core.errors import Conflict, UnreadableRecord
from connector_core.model.connector import Connector
from connector_core.model.events import DomainEvent
from connector_core.ports.connector_repository import ConnectorRepository
from connector_core.ports.outbox import Outbox
from connector_core.ports.token_store import TokenStore
from connector_core.tokens import TokenCensus, TokenRecord, TokenSummary


class Op(enum.Enum):
    ADD = "add"
    SAVE = "save"
    DELETE = "delete"


@define
class StagedConnector:
    op: Op
    connector: Connector
    expected_version: int


@define
class StagedToken:
    op: Op
    record: TokenRecord
    expected_version: int


@define
class Batch:
    """Everything one unit of work commits, in the order the adapter must check and write."""

    connectors: list[StagedConnector] = field(factory=list)
    tokens: list[StagedToken] = field(factory=list)
    events: list[DomainEvent] = field(factory=list)

    @property
    def empty(self) -> bool:
        return not (self.connectors or self.tokens or self.events)


class _Connectors:
    def __init__(self, uow: BufferedUnitOfWork) -> None:
        self._uow = uow

    async def get(self, org_id: str, key: str) -> Connector | None:
        staged = self._uow._staged_connectors.get((org_id, key))
        if staged is not None:
            return staged.connector
        return await self._uow._load_connector(org_id, key)

    async def list(self, org_id: str, *, enabled: bool | None = None) -> Sequence[Connector]:
        stored = {c.key: c for c in await self._uow._list_connectors(org_id)}
        for (org, key), staged in self._uow._staged_connectors.items():
            if org == org_id:
                stored[key] = staged.connector
        found = sorted(stored.values(), key=lambda c: c.key)
        return [c for c in found if enabled is None or c.is_enabled is enabled]

    async def add(self, connector: Connector) -> None:
        ident = (connector.org_id, connector.key)
        if ident in self._uow._staged_connectors:
            raise Conflict(f"connector {connector.key} already exists for this org")
        self._uow._staged_connectors[ident] = StagedConnector(Op.ADD, connector, 0)

    async def save(self, connector: Connector) -> None:
        ident = (connector.org_id, connector.key)
        prior = self._uow._staged_connectors.get(ident)
        if prior is not None:
            prior.connector = connector
            return
        self._uow._staged_connectors[ident] = StagedConnector(Op.SAVE, connector, connector.version)


class _Tokens:
    def __init__(self, uow: BufferedUnitOfWork) -> None:
        self._uow = uow

    def _staged_for(self, token_id: str) -> StagedToken | None:
        return self._uow._staged_tokens.get(token_id)

    async def get(self, token_id: str) -> TokenRecord | None:
        staged = self._staged_for(token_id)
        if staged is not None:
            return None if staged.op is Op.DELETE else staged.record
        return await self._uow._load_token(token_id)

    async def get_for_connector(self, org_id: str, connector_key: str) -> TokenRecord | None:
        for staged in self._uow._staged_tokens.values():
            rec = staged.record
            if (rec.org_id, rec.connector_key) == (org_id, connector_key):
                return None if staged.op is Op.DELETE else rec
        record = await self._uow._load_token_for_connector(org_id, connector_key)
        if record is not None and (record.org_id, record.connector_key) != (org_id, connector_key):
            # found by its columns, but its metadata (bound to its material: adapters.sealing)
            # names another org or connector: the columns were changed, never by us
            raise UnreadableRecord(
                f"token record {record.id} cannot be read (stored for another org or connector)", record_id=record.id
            )
        return record

    async def add(self, record: TokenRecord) -> None:
        if record.id in self._uow._staged_tokens:
            raise Conflict("token record already exists")
        self._uow._staged_tokens[record.id] = StagedToken(Op.ADD, record, 0)

    async def save(self, record: TokenRecord) -> None:
        prior = self._staged_for(record.id)
        if prior is not None:
            prior.record = record
            return
        self._uow._staged_tokens[record.id] = StagedToken(Op.SAVE, record, record.version)

    async def delete(self, record: TokenRecord) -> None:
        prior = self._staged_for(record.id)
        if prior is not None and prior.op is Op.ADD:
            del self._uow._staged_tokens[record.id]
            return
        expected = prior.expected_version if prior else record.version
        self._uow._staged_tokens[record.id] = StagedToken(Op.DELETE, record, expected)

    async def due_before(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        return await self._uow._tokens_due(moment, limit)

    async def expired_unnotified(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        return await self._uow._tokens_expired(moment, limit)

    async def warnings_due(self, moment: datetime, limit: int) -> Sequence[TokenRecord]:
        return await self._uow._tokens_warn_due(moment, limit)

    async def summaries(self, org_id: str) -> Sequence[TokenSummary]:
        found = {s.connector_key: s for s in await self._uow._token_summaries(org_id)}
        for staged in self._uow._staged_tokens.values():
            rec = staged.record
            if rec.org_id != org_id:
                continue
            if staged.op is Op.DELETE:
                found.pop(rec.connector_key, None)
            else:
                found[rec.connector_key] = rec.summary()
        return [found[k] for k in sorted(found)]

    async def census(self, now: datetime) -> TokenCensus:
        return await self._uow._token_census(now)


class _Outbox:
    def __init__(self, uow: BufferedUnitOfWork) -> None:
        self._uow = uow

    async def add(self, events: Sequence[DomainEvent]) -> None:
        self._uow._staged_events.extend(events)


class BufferedUnitOfWork(ABC):
    """Implements the UnitOfWork port on top of a few loads and one atomic ``_apply``."""

    def __init__(self) -> None:
        self._staged_connectors: dict[tuple[str, str], StagedConnector] = {}
        self._staged_tokens: dict[str, StagedToken] = {}
        self._staged_events: list[DomainEvent] = []
        self.connectors: ConnectorRepository = _Connectors(self)
        self.tokens: TokenStore = _Tokens(self)
        self.outbox: Outbox = _Outbox(self)
        self._committed = False

    async def __aenter__(self) -> BufferedUnitOfWork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._reset()

    async def commit(self) -> None:
        batch = Batch(
            connectors=list(self._staged_connectors.values()),
            tokens=list(self._staged_tokens.values()),
            events=list(self._staged_events),
        )
        self._reset()
        if batch.empty:
            return
        await self._apply(batch)
        # Only after the store accepted the batch do the objects carry the new versions.
        for sc in batch.connectors:
            sc.connector.version = sc.expected_version + 1
        for st in batch.tokens:
            st.record.version = st.expected_version + 1

    def _reset(self) -> None:
        self._staged_connectors = {}
        self._staged_tokens = {}
        self._staged_events = []

    # -- what an adapter provides -------------------------------------------------------

    @abstractmethod
    async def _load_connector(self, org_id: str, key: str) -> Connector | None: ...

    @abstractmethod
    async def _list_connectors(self, org_id: str) -> Sequence[Connector]: ...

    @abstractmethod
    async def _load_token(self, token_id: str) -> TokenRecord | None: ...

    @abstractmethod
    async def _load_token_for_connector(self, org_id: str, connector_key: str) -> TokenRecord | None: ...

    @abstractmethod
    async def _tokens_due(self, moment: datetime, limit: int) -> Sequence[TokenRecord]: ...

    @abstractmethod
    async def _tokens_expired(self, moment: datetime, limit: int) -> Sequence[TokenRecord]: ...

    @abstractmethod
    async def _tokens_warn_due(self, moment: datetime, limit: int) -> Sequence[TokenRecord]: ...

    @abstractmethod
    async def _token_summaries(self, org_id: str) -> Sequence[TokenSummary]: ...

    @abstractmethod
    async def _token_census(self, now: datetime) -> TokenCensus: ...

    @abstractmethod
    async def _apply(self, batch: Batch) -> None:
        """Write the batch atomically: each staged item's stored version must equal its
        ``expected_version`` (0 = absent), else raise :class:`Conflict` and write nothing."""
