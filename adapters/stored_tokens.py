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
  records behind it. Any later save of the record clears the mark;
- a list of summaries (the connector list's token outlook, read on every request) leaves it
  out and says so once per process (:func:`summaries`), so one damaged record never fails
  the list of its org.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import cattrs

from adapters.lru import LruCache
from adapters.sealing import Sealer, open_token_record, token_summary
from connector_core.errors import UnreadableRecord
from connector_core.tokens import TokenRecord, TokenSummary

log = logging.getLogger(__name__)

R = TypeVar("R")

#: how long a batch read leaves an unreadable record out
SET_ASIDE = timedelta(hours=1)

#: the records already said to be left out of summaries (bounded: damage is rare)
_UNLISTED: LruCache[str, bool] = LruCache(10_000)


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


def summaries(conv: cattrs.Converter, rows: Iterable[tuple[str, Any]]) -> list[TokenSummary]:
    """The summaries of ``(token id, metadata document or its JSON text)`` rows whose metadata
    can be read. One that cannot is left out, logged at ERROR (its id and the kind of failure,
    never its content) the first time this process meets it: lists are read on every request."""
    found: list[TokenSummary] = []
    for token_id, meta in rows:
        try:
            found.append(token_summary(conv, json.loads(meta) if isinstance(meta, str) else meta))
        except Exception as exc:
            if _UNLISTED.get(token_id) is None:
                _UNLISTED.put(token_id, True)
                log.error(
                    "token record %s cannot be read (%s); left out of its org's list", token_id, type(exc).__name__
                )
    return found
