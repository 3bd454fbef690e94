"""The key-value store port on etcd v3 (``aetcd``), plus the typed face the other etcd adapters share.

Revisions are etcd's ``mod_revision``; a compare-and-swap is one etcd transaction (``create_revision
== 0`` for "must not exist", ``mod_revision == expected`` otherwise), so it is atomic on the server.

:class:`EtcdOps` is the one place where a call gets its deadline and its member of the cluster
(:mod:`adapters.etcd.members`: the member in use, failing over to the next); errors are
translated by :mod:`adapters.etcd.errors`. Nothing else in ``adapters.etcd`` touches an
``aetcd`` exception.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import aetcd
from attrs import frozen

from adapters.etcd.errors import translate_errors
from adapters.etcd.members import EtcdMembers, TlsMaterial
from connector_core.errors import Conflict, ConnectorManagerError, Unavailable
from connector_core.ports.kv_store import Versioned

__all__ = ["EtcdEntry", "EtcdKeyValueStore", "EtcdOps", "TxnResult", "connect_etcd"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# aetcd's compare / operation objects (untyped); only built through EtcdOps' helpers below.
Compare = Any
Op = Any

_KEY_CODEC: Final = ("utf-8", "surrogateescape")
_TXN: Final = aetcd.client.Transactions()


def _b(text: str) -> bytes:
    return text.encode(*_KEY_CODEC)


def _s(raw: bytes) -> str:
    return raw.decode(*_KEY_CODEC)


@frozen
class EtcdEntry:
    """One key as etcd returns it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    @classmethod
    def from_kv(cls, kv: Any) -> EtcdEntry:
        return cls(_s(kv.key), bytes(kv.value), int(kv.create_revision), int(kv.mod_revision), int(kv.lease))


@frozen
class TxnResult:
    succeeded: bool
    #: the keys read by ``get`` operations of the branch that ran, in order
    entries: tuple[EtcdEntry, ...]
    #: how many keys the ``delete`` operations of the branch that ran removed
    deleted: int


class EtcdOps:
    """Typed, deadline-bound calls on the members of a cluster; every driver error leaves as
    :class:`Unavailable` (or :class:`ConnectorManagerError` when etcd refused the request)."""

    def __init__(self, members: EtcdMembers) -> None:
        self.members = members

    @property
    def timeout(self) -> float:
        return self.members.timeout

    async def call(self, what: str, op: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """``await op(client)`` on the member in use (failing over within the deadline)."""
        return await self.members.call(what, op)

    @staticmethod
    def translated(what: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Translate driver errors raised inside the block (used for streams such as watches)."""
        return translate_errors(what)

    # -- key-value ---------------------------------------------------------------------------

    async def get(self, key: str) -> EtcdEntry | None:
        got = await self.call("get", lambda c: c.get(_b(key)))
        return None if got is None else EtcdEntry.from_kv(got)

    async def get_prefix(self, prefix: str) -> list[EtcdEntry]:
        if prefix:
            got = await self.call("list", lambda c: c.get_prefix(_b(prefix), sort_order="ascend"))
        else:  # an empty prefix has no "next key": the whole key space
            got = await self.call("list", lambda c: c.get_all(sort_order="ascend"))
        return [EtcdEntry.from_kv(kv) for kv in got.kvs]

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Unconditional put; returns the new revision (the key's ``mod_revision``)."""
        done = await self.call("put", lambda c: c.put(_b(key), value, lease=lease or None))
        return int(done.header.revision)

    async def delete(self, key: str) -> bool:
        done = await self.call("delete", lambda c: c.delete(_b(key)))
        return done is not None and int(done.deleted) > 0

    async def txn(
        self, what: str, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        succeeded, responses = await self.call(
            what, lambda c: c.transaction(compare=list(compare), success=list(success), failure=list(failure))
        )
        entries: list[EtcdEntry] = []
        deleted = 0
        for response in responses:
            if isinstance(response, list):  # a get: [(value, aetcd.Get), ...]
                entries.extend(EtcdEntry.from_kv(kv) for _, kv in response)
            elif response.WhichOneof("response") == "response_delete_range":
                deleted += int(response.response_delete_range.deleted)
        return TxnResult(bool(succeeded), tuple(entries), deleted)

    async def put_guarded(
        self, what: str, compare: Sequence[Compare], key: str, value: bytes, *, lease: int = 0
    ) -> tuple[bool, EtcdEntry | None]:
        """Put ``value`` at ``key`` if ``compare`` holds; (whether it is stored, the key as it is
        now). A compare that failed because this very put landed already (an earlier attempt on
        a member that froze, or a leader that died, after the commit) counts as stored: the key
        holds exactly ``value`` (values carry random owners or nonces, so equal bytes are ours)."""
        done = await self.txn(
            what, compare, [self.op_put(key, value, lease=lease), self.op_get(key)], [self.op_get(key)]
        )
        current = done.entries[0] if done.entries else None
        return done.succeeded or (current is not None and current.value == value), current

    # transaction building blocks
    def absent(self, key: str) -> Compare:
        return _TXN.create(_b(key)) == 0

    def mod_is(self, key: str, revision: int) -> Compare:
        return _TXN.mod(_b(key)) == revision

    def created_at(self, key: str, revision: int) -> Compare:
        return _TXN.create(_b(key)) == revision

    def op_put(self, key: str, value: bytes, *, lease: int = 0) -> Op:
        return _TXN.put(_b(key), value, lease=lease or None)

    def op_get(self, key: str) -> Op:
        return _TXN.get(_b(key))

    def op_delete(self, key: str) -> Op:
        return _TXN.delete(_b(key))

    # -- leases ------------------------------------------------------------------------------

    async def grant(self, ttl_seconds: int) -> int:
        """A new lease; etcd may raise the TTL to its minimum (2 s with default raft timing)."""
        lease = await self.call("lease grant", lambda c: c.lease(ttl_seconds))
        return int(lease.id)

    async def revoke(self, lease_id: int) -> None:
        """Revoke, best effort: an unknown (expired) lease or an outage only leaves it to expire."""
        if not lease_id:
            return
        try:
            await self.call("lease revoke", lambda c: c.revoke_lease(lease_id))
        except ConnectorManagerError as exc:
            log.debug("etcd lease revoke skipped: %s", exc)

    # -- cluster -----------------------------------------------------------------------------

    async def status(self) -> None:
        """A status answer from a member (the one in use, else the next) that knows a leader:
        a member cut off from the others (the cluster lost its quorum) answers, but can serve
        no write and no linearizable read."""

        async def ask(client: aetcd.Client) -> None:
            await client.connect()
            answer = await client.maintenancestub.Status(
                aetcd.rpc.StatusRequest(), timeout=self.timeout, metadata=client.metadata
            )
            if not answer.leader:
                raise Unavailable("etcd is unavailable (status: no leader)", metadata={"dependency": "etcd"})

        await self.call("status", ask)

    async def close(self) -> None:
        await self.members.aclose()


class EtcdKeyValueStore:
    """:class:`~connector_core.ports.kv_store.KeyValueStore` on etcd; revisions are ``mod_revision``.

    ``namespace`` is prepended to every key on the wire and stripped from listings (like etcd's
    ``--namespace`` proxy): several deployments or test runs can share one cluster. Values are
    stored as UTF-8; wrap the store in :class:`~adapters.crypto.EncryptedKeyValueStore` so etcd
    only ever holds ciphertext.
    """

    def __init__(self, members: EtcdMembers, *, namespace: str = "") -> None:
        self._ops = EtcdOps(members)
        self._ns = namespace

    @property
    def members(self) -> EtcdMembers:
        """The cluster's clients, to share with :class:`~adapters.etcd.EtcdLeaseLock` and the watcher."""
        return self._ops.members

    @property
    def ops(self) -> EtcdOps:
        return self._ops

    def _versioned(self, entry: EtcdEntry) -> Versioned:
        return Versioned(_s(entry.value), entry.mod_revision)

    async def get(self, key: str) -> Versioned | None:
        entry = await self._ops.get(self._ns + key)
        return None if entry is None else self._versioned(entry)

    def _guard(self, key: str, expected_revision: int) -> Compare:
        if expected_revision == 0:
            return self._ops.absent(key)
        return self._ops.mod_is(key, expected_revision)

    async def put(self, key: str, value: str, *, expected_revision: int | None = None) -> int:
        wire = self._ns + key
        if expected_revision is None:
            return await self._ops.put(wire, _b(value))
        # read back in the same transaction: the get sees the put's revision
        stored, current = await self._ops.put_guarded(
            "compare-and-put", [self._guard(wire, expected_revision)], wire, _b(value)
        )
        if not stored or current is None:
            raise Conflict(f"key {key!r} changed concurrently")
        return current.mod_revision

    async def delete(self, key: str, *, expected_revision: int | None = None) -> bool:
        wire = self._ns + key
        if expected_revision is None:
            return await self._ops.delete(wire)
        done = await self._ops.txn(
            "compare-and-delete", [self._guard(wire, expected_revision)], [self._ops.op_delete(wire)]
        )
        if not done.succeeded:
            raise Conflict(f"key {key!r} changed concurrently")
        return done.deleted > 0

    async def list_prefix(self, prefix: str) -> Mapping[str, Versioned]:
        entries = await self._ops.get_prefix(self._ns + prefix)
        cut = len(self._ns)
        return {entry.key[cut:]: self._versioned(entry) for entry in entries}

    async def check(self) -> bool:
        """A status round trip within the timeout; never raises."""
        try:
            await self._ops.status()
        except ConnectorManagerError:
            return False
        return True

    async def aclose(self) -> None:
        """Close the client (and with it the watches and leases' keep-alives of every user)."""
        await self._ops.close()

    def __repr__(self) -> str:
        return f"EtcdKeyValueStore({self._ops.members!r}, namespace={self._ns!r}, timeout={self._ops.timeout:g})"


def connect_etcd(
    *endpoints: tuple[str, int],
    user: str | None = None,
    password: str | None = None,
    tls: TlsMaterial | None = None,
    timeout: float = 2.0,
    member_timeout: float = 0.5,
    namespace: str = "",
) -> EtcdKeyValueStore:
    """A store on the members at ``endpoints`` (``(host, port)`` each). No connection is opened
    here: the first call connects (and authenticates when ``user``/``password`` are given)."""
    members = EtcdMembers(
        endpoints, user=user, password=password, tls=tls, timeout=timeout, member_timeout=member_timeout
    )
    return EtcdKeyValueStore(members, namespace=namespace)
