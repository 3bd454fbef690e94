"""Reading token records back, for the SQL and the document stores.

A record whose stored data cannot be read — its material does not decrypt (another keyring,
tampering), or its metadata does not decode (damaged, written by something else) — is that
record's problem only:

- reading it alone raises :class:`UnreadableRecord` naming it;
- a batch read (the refresher's due tokens, the expiry sweep, the refresh-token warnings) leaves it out, logs it once at
  ERROR (its id and the kind of failure, never its content) and *sets it aside* for
  :data:`SET_ASIDE` (the store writes ``set_aside_until`` in the clear, without reading or
  rewriting the record, so its material stays as it is should a key come back). So a damaged
  record never fails a batch, is not retried every pass, and cannot crowd out the readable
  records behind it. Any later save of the record clears the mark.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import cattrs

from adapters.sealing import Sealer, open_token_record
from connector_core.errors import UnreadableRecord
from connector_core.tokens import TokenRecord

log = logging.getLogger(__name__)

R = TypeVar("R")

#: how long a batch read leaves an unreadable record out
SET_ASIDE = timedelta(hours=1)


def open_token(
    conv: cattrs.Converter, sealer: Sealer, token_id: str, meta: Any, material: Any, version: Any
) -> TokenRecord:
    """The stored record, or :class:`UnreadableRecord` (from the cause) when it cannot be read.
    ``meta`` is the metadata document, or its JSON text."""
    try:
        if isinstance(meta, str):
            meta = json.loads(meta)
        if not isinstance(meta, Mapping) or not isinstance(material, str):
            raise TypeError("stored fields of the wrong type")
        return open_token_record(conv, sealer, token_id, meta, material, int(version))
    except Exception as exc:
        raise UnreadableRecord(
            f"token record {token_id} cannot be read ({type(exc).__name__})", record_id=token_id
        ) from exc


async def read_batch(
    fetch: Callable[[], Awaitable[Iterable[R]]],
    read: Callable[[R], TokenRecord],
    set_aside: Callable[[list[str]], Awaitable[None]],
) -> list[TokenRecord]:
    """The readable records of ``fetch()``; unreadable ones are set aside and the batch fetched
    again (a fetch leaves set-aside records out), so they never take a readable record's place."""
    while True:
        records, unreadable = readable(await fetch(), read)
        if not unreadable:
            return records
        await set_aside(unreadable)


def readable(rows: Iterable[R], read: Callable[[R], TokenRecord]) -> tuple[list[TokenRecord], list[str]]:
    """The records of ``rows`` that can be read, and the ids of those that cannot (logged)."""
    records: list[TokenRecord] = []
    unreadable: list[str] = []
    for row in rows:
        try:
            records.append(read(row))
        except UnreadableRecord as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "unknown"
            log.error("token record %s cannot be read (%s); set aside for %s", exc.record_id, cause, SET_ASIDE)
            unreadable.append(exc.record_id)
    return records, unreadable
