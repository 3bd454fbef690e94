"""What a storage backend provides: the storage ports on one database."""

from __future__ import annotations

from attrs import define, field

from adapters.health import Probe
from adapters.sealing import NothingSealed, SealedValues
from connector_core.ports.change_stamp import ChangeStamp
from connector_core.ports.idempotency import IdempotencyStore
from connector_core.ports.lock import LeasedTokenReads, LeaseLock
from connector_core.ports.oauth_state import OAuthStateStore
from connector_core.ports.outbox import OutboxReader
from connector_core.ports.unit_of_work import UnitOfWorkFactory


@define
class StoragePorts:
    """Connectors, tokens and the outbox (through units of work), OAuth state, answers kept for
    Idempotency-Key retries, and leases kept in the same database (the ``local`` lock choice)."""

    uow: UnitOfWorkFactory
    outbox: OutboxReader
    states: OAuthStateStore
    lock: LeaseLock
    check: Probe
    idempotency: IdempotencyStore
    #: the sealed values at rest (token material, OAuth states), for key rotation
    sealed: SealedValues = field(factory=NothingSealed)
    #: tells cheaply whether an org's data changed (None: the backend cannot, nothing is cached on it)
    stamp: ChangeStamp | None = None
    #: takes a token's lease on ``lock`` and reads the token in one call (None: the backend
    #: cannot; the refresher then composes the two)
    leased_reads: LeasedTokenReads | None = None
