"""What a committed batch writes, for the SQL and the document stores.

Both persistent adapters store the same fields and follow the same rules; only the statements
differ. This module holds what they share, so a new field or a new rule is written once:

- the **field lists**: :func:`connector_fields` and :func:`token_fields` (token material sealed,
  the rest queryable; datetimes and booleans left native, each adapter encodes them for its
  store);
- the **add/save/delete policy**: :func:`plan` turns a :class:`Batch` into :class:`Write` steps.
  An ADD is an insert that must find nothing; a SAVE is an update that must find the version the
  caller loaded; a DELETE is a delete that must find that version. A step that does not apply is
  a :class:`Conflict` with the step's message, and the adapter writes nothing of the batch.

Everything here runs before the adapter's transaction starts (sealing is CPU work), so the
transaction stays short.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import cattrs
from attrs import frozen

from adapters.codec import connector_from_doc, connector_to_doc
from adapters.sealing import Sealer, seal_token_record
from adapters.unit_of_work_base import Batch, Op
from connector_core.errors import Conflict
from connector_core.model.connector import Connector
from connector_core.tokens import TokenRecord


def connector_fields(conv: cattrs.Converter, connector: Connector) -> dict[str, Any]:
    """The stored fields of a connector: identity and ``is_enabled`` for queries, the whole
    aggregate (without its version, which the store keeps) under ``state``."""
    state = connector_to_doc(conv, connector)
    state.pop("version", None)
    return {"org_id": connector.org_id, "key": connector.key, "is_enabled": connector.is_enabled, "state": state}


def connector_from_fields(conv: cattrs.Converter, state: Mapping[str, Any], version: int) -> Connector:
    """The connector stored as ``state`` at ``version``."""
    return connector_from_doc(conv, {**state, "version": version})


def token_fields(conv: cattrs.Converter, sealer: Sealer, record: TokenRecord) -> dict[str, Any]:
    """The stored fields of a token record: what the sweeps and the metrics query in the clear, the rest of the
    record under ``meta`` and the token material sealed (bound to ``/tokens/{id}``) in ``material``."""
    meta, sealed = seal_token_record(conv, sealer, record)
    return {
        "id": record.id,
        "org_id": record.org_id,
        "connector_key": record.connector_key,
        "status": str(record.status),
        "refresh_due_at": record.refresh_due_at,
        "next_attempt_at": record.next_attempt_at,
        "expires_at": record.tokens.expires_at,
        "expiry_notified": record.expiry_notified,
        "refresh_deadline": record.refresh_deadline,
        "refresh_warn_at": record.refresh_warn_at,
        "meta": meta,
        "material": sealed,
        # a saved record is readable: it is no longer set aside (adapters.stored_tokens)
        "set_aside_until": None,
    }


class Table(enum.Enum):
    CONNECTORS = "connectors"
    TOKENS = "tokens"


class Kind(enum.Enum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


@frozen
class Write:
    """One conditional write. ``match`` identifies the row (``org_id``+``key``, or ``id``); an
    UPDATE or DELETE applies only where the stored version is ``expected_version``; an INSERT
    only where nothing is stored yet (and no unique key collides). ``fields`` (INSERT, UPDATE)
    is the whole new row, ``version`` included. When the write does not apply, the adapter
    raises ``Conflict(conflict)`` (see :meth:`refused`)."""

    table: Table
    kind: Kind
    match: Mapping[str, Any]
    expected_version: int
    fields: Mapping[str, Any] | None
    conflict: str
    #: the staged object, for what one store keeps beyond the shared fields
    subject: Connector | TokenRecord

    def refused(self) -> Conflict:
        return Conflict(self.conflict)


def plan(batch: Batch, conv: cattrs.Converter, sealer: Sealer) -> list[Write]:
    """The writes of ``batch``: its connectors first, then its tokens, in staging order."""
    writes: list[Write] = []
    for sc in batch.connectors:
        con = sc.connector
        fields = {**connector_fields(conv, con), "version": sc.expected_version + 1}
        match = {"org_id": con.org_id, "key": con.key}
        if sc.op is Op.ADD:
            writes.append(
                Write(
                    Table.CONNECTORS, Kind.INSERT, match, 0, fields, f"connector {con.key} already exists; retry", con
                )
            )
        else:
            writes.append(
                Write(
                    Table.CONNECTORS,
                    Kind.UPDATE,
                    match,
                    sc.expected_version,
                    fields,
                    f"connector {con.key} was changed by someone else; retry",
                    con,
                )
            )
    changed = "token record was changed by someone else; retry"
    for st in batch.tokens:
        rec = st.record
        match = {"id": rec.id}
        if st.op is Op.DELETE:
            writes.append(Write(Table.TOKENS, Kind.DELETE, match, st.expected_version, None, changed, rec))
            continue
        fields = {**token_fields(conv, sealer, rec), "version": st.expected_version + 1}
        if st.op is Op.ADD:
            writes.append(
                Write(Table.TOKENS, Kind.INSERT, match, 0, fields, "this connector already has a token record", rec)
            )
        else:
            writes.append(Write(Table.TOKENS, Kind.UPDATE, match, st.expected_version, fields, changed, rec))
    return writes
