"""The change stamp of a SQLite file: ``PRAGMA data_version`` and the per-org change counters.

A connection of its own, used on the caller's thread (each call is a read of the WAL index in
shared memory, or one indexed row: microseconds, no disk wait), with no busy timeout: when the
file is locked in a way that would make it wait, it answers None (the caller then reads the
data itself) instead of blocking the event loop.

- ``PRAGMA data_version`` differs between two calls on one connection whenever *another*
  connection committed in between, in this process or any other. This connection never writes,
  so every commit counts.
- ``counters`` row ``org:<org id>`` is added to in the same transaction as every write of that
  org's connectors or tokens (:func:`bump_org_versions`), by every process.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from adapters.sqlite.aside_reads import SideConnection
from adapters.sqlite.database import next_counter

_ORG = "org:"


def bump_org_versions(c: sqlite3.Connection, org_ids: Iterable[str]) -> None:
    """Inside the caller's write transaction: mark each org's data as changed."""
    for org_id in sorted(set(org_ids)):
        next_counter(c, _ORG + org_id)


class SQLiteChangeStamp:
    """:class:`~connector_core.ports.change_stamp.ChangeStamp` of one database file."""

    def __init__(self, path: str) -> None:
        self._path = path
        # an in-memory database has no second connection: another one would open another database
        self._side = SideConnection(self._open, closed=path == ":memory:")

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=0)
        conn.execute("PRAGMA query_only=1")
        return conn

    def _one(self, sql: str, params: tuple[str, ...] = ()) -> int | None:
        try:
            row = self._side.call(lambda c: c.execute(sql, params).fetchone())
        except sqlite3.Error:  # busy, locked, being recovered, closed: cannot tell now
            return None
        return 0 if row is None else int(row[0])

    def store_version(self) -> int | None:
        return self._one("PRAGMA data_version")

    def org_version(self, org_id: str) -> int | None:
        return self._one("SELECT value FROM counters WHERE name=?", (_ORG + org_id,))

    def close(self) -> None:
        self._side.close()

    def __repr__(self) -> str:
        return f"SQLiteChangeStamp(path={self._path!r})"
