"""The lease lock port on etcd: one key per lock, attached to an etcd lease.

Design:

- **The holding is the owner token** (random, in the value): release and extend act only while
  the key still carries it. Every successful acquire *creates* the key (a lapsed holder's key is
  deleted first, in its own compare-and-delete). There are no fencing tokens (see
  :mod:`connector_core.ports.lock`).
- **Expiry has two clocks.** The key is attached to an etcd lease of ``ceil(ttl)`` seconds so a
  crashed holder's key disappears on its own. But etcd raises short TTLs to its minimum (2 s with
  default raft timing) and reaps expired leases in ~0.5 s ticks, so the lease alone would hold a
  1 s lock for ~2.5 s. The value therefore also records the deadline on ``clock``; a key whose
  deadline passed counts as free (taken over with a compare-and-swap on its ``mod_revision``),
  exactly as in the other adapters. Holders on different machines need loosely synchronised
  clocks (NTP); the guarded store's own check protects its data when they are not.
- **Extend grants a new etcd lease** with the new TTL and moves the key to it in a transaction
  guarded by the ``mod_revision`` just read, then revokes the old lease: a keep-alive can only
  restore the TTL first granted, and the port lets each extend choose its TTL.
"""

from __future__ import annotations

import json
import math
import secrets
from datetime import datetime, timedelta

from adapters.etcd.kv_store import EtcdEntry, EtcdOps
from adapters.etcd.members import EtcdMembers
from adapters.lease_wait import acquire_waiting
from connector_core.errors import LeaseLost
from connector_core.ports.clock import Clock
from connector_core.ports.lock import Lease

__all__ = ["EtcdLeaseLock"]

#: a free-or-expired key can be raced by another acquirer between the read and the write
_ATTEMPTS = 3


def _holding(entry: EtcdEntry) -> tuple[str, float]:
    """(owner, deadline as a POSIX timestamp) of a lock key; a foreign value counts as expired."""
    try:
        doc = json.loads(entry.value)
        return str(doc["owner"]), float(doc["deadline"])
    except (ValueError, KeyError, TypeError):
        return "", 0.0


class EtcdLeaseLock:
    """:class:`~connector_core.ports.lock.LeaseLock` on etcd; keys are ``prefix + name``.

    Errors: :class:`Unavailable` when etcd cannot be reached (from :class:`EtcdOps`),
    :class:`LeaseLost` from :meth:`extend` when the holding is gone.
    """

    def __init__(self, members: EtcdMembers, clock: Clock, *, prefix: str = "/services/locks/"):
        self._ops = EtcdOps(members)
        self._clock = clock
        self._prefix = prefix

    def _key(self, name: str) -> str:
        return self._prefix + name

    @staticmethod
    def _value(owner: str, deadline: datetime) -> bytes:
        return json.dumps({"owner": owner, "deadline": deadline.timestamp()}).encode()

    @staticmethod
    def _lease_ttl(ttl_seconds: float) -> int:
        # etcd TTLs are whole seconds; never shorter than asked, so the key outlives the deadline
        return max(1, math.ceil(ttl_seconds))

    async def acquire(self, name: str, ttl_seconds: float, *, wait: float = 0.0) -> Lease | None:
        return await acquire_waiting(lambda: self._take(name, ttl_seconds), wait)

    async def _take(self, name: str, ttl_seconds: float) -> Lease | None:
        key = self._key(name)
        now = self._clock.now()
        held = await self._ops.get(key)
        if held is not None and _holding(held)[1] > now.timestamp():
            return None  # the common answer to a poll: one read, no lease granted
        deadline = now + timedelta(seconds=ttl_seconds)
        owner = secrets.token_hex(16)
        lease_id = await self._ops.grant(self._lease_ttl(ttl_seconds))
        try:
            value = self._value(owner, deadline)
            for _ in range(_ATTEMPTS):
                # a retry on another member that finds this very value stored took the lock
                stored, current = await self._ops.put_guarded(
                    "lock acquire", [self._ops.absent(key)], key, value, lease=lease_id
                )
                if stored:
                    lease_id = 0  # the key owns the lease now
                    return Lease(name, owner, deadline)
                if current is None:  # deleted in between: try again
                    continue
                if _holding(current)[1] > now.timestamp():
                    return None  # held and not expired
                # expired by its deadline (its etcd lease may live on): delete it if nobody moved it
                taken = await self._ops.txn(
                    "lock takeover", [self._ops.mod_is(key, current.mod_revision)], [self._ops.op_delete(key)]
                )
                if taken.succeeded:
                    await self._ops.revoke(current.lease)
            return None
        finally:
            await self._ops.revoke(lease_id)

    async def _current(self, lease: Lease) -> EtcdEntry | None:
        """The lock key if it is still this holding (same owner)."""
        entry = await self._ops.get(self._key(lease.name))
        if entry is None or _holding(entry)[0] != lease.owner:
            return None
        return entry

    async def release(self, lease: Lease) -> bool:
        entry = await self._current(lease)
        if entry is None:
            return False
        key = self._key(lease.name)
        done = await self._ops.txn(
            "lock release", [self._ops.mod_is(key, entry.mod_revision)], [self._ops.op_delete(key)]
        )
        if done.succeeded:
            await self._ops.revoke(entry.lease)
        return done.succeeded and done.deleted > 0

    async def extend(self, lease: Lease, ttl_seconds: float) -> Lease:
        now = self._clock.now()
        entry = await self._current(lease)
        if entry is None or _holding(entry)[1] <= now.timestamp():
            raise LeaseLost(f"lease {lease.name!r} is no longer held")
        key = self._key(lease.name)
        deadline = now + timedelta(seconds=ttl_seconds)
        new_lease = await self._ops.grant(self._lease_ttl(ttl_seconds))
        stored, _ = await self._ops.put_guarded(
            "lock extend",
            [self._ops.mod_is(key, entry.mod_revision)],
            key,
            self._value(lease.owner, deadline),
            lease=new_lease,
        )
        await self._ops.revoke(entry.lease if stored else new_lease)
        if not stored:
            raise LeaseLost(f"lease {lease.name!r} is no longer held")
        return Lease(lease.name, lease.owner, deadline)

    def __repr__(self) -> str:
        return f"EtcdLeaseLock(prefix={self._prefix!r})"
