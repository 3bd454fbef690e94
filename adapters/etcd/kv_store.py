"""The key-value store port on etcd v3 (``aetcd``), plus the typed face the other etcd adapters share.

Revisions are etcd's ``mod_revision``; a compare-and-swap is one etcd transaction (``create_revision
== 0`` for "must not exist", ``mod_revision == expected`` otherwise), so it is atomic on the server.

``aetcd`` is untyped and raises its own exceptions (and plain ``TimeoutError`` while another task is
connecting). :class:`EtcdOps` is the one place where a call gets its deadline and where those errors
become :class:`Unavailable`; nothing else in ``adapters.etcd`` touches an ``aetcd`` exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import aetcd
from attrs import frozen

from connector_core.deadline import remaining
from connector_core.errors import Conflict, ConnectorManagerError, Unavailable
from connector_core.ports.kv_store import Versioned

__all__ = ["EtcdEntry", "EtcdKeyValueStore", "EtcdOps", "TxnResult", "connect_etcd"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: gRPC retries a refused connection with exponential backoff up to 120 s by default, and RPCs
#: fail fast meanwhile; after an etcd restart that would look like a minutes-long outage. At most
#: 0.5 s between attempts: writes are back within a second of etcd.
_CHANNEL_OPTIONS: Final[dict[str, Any]] = {
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 500,
    # notice a silently dead peer (no RST) on an idle watch stream
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
}

# aetcd's compare / operation objects (untyped); only built through EtcdOps' helpers below.
Compare = Any
Op = Any

_KEY_CODEC: Final = ("utf-8", "surrogateescape")


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


def _grpc_code(exc: BaseException) -> Any:
    """The gRPC status code behind an aetcd error (aetcd keeps the RPC error as the cause)."""
    for err in (exc, exc.__cause__):
        if isinstance(err, aetcd.rpc.AioRpcError):
            return err.code()
    return None


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason (gRPC details name addresses and states, never values)."""
    code = _grpc_code(exc)
    if isinstance(exc, TimeoutError | aetcd.ConnectionTimeoutError):
        return "timed out"
    if isinstance(exc, aetcd.ConnectionFailedError):
        return "cannot connect"
    if isinstance(exc, aetcd.exceptions.UnauthenticatedError) or "authentication failed" in str(exc):
        return "authentication failed (check the etcd user and password)"
    if code == aetcd.rpc.StatusCode.PERMISSION_DENIED:
        return "permission denied (check the etcd user's role)"
    return type(exc).__name__ if code is None else f"{type(exc).__name__}, {code.name}"


def _rejected(exc: BaseException) -> bool:
    """etcd answered and refused: a bug, a limit or a misconfiguration, not an outage."""
    if isinstance(exc, aetcd.InvalidArgumentError | aetcd.PreconditionFailedError):
        return True
    return _grpc_code(exc) in (aetcd.rpc.StatusCode.PERMISSION_DENIED, aetcd.rpc.StatusCode.OUT_OF_RANGE)


class EtcdOps:
    """Typed, deadline-bound calls on an ``aetcd.Client``; every driver error leaves as
    :class:`Unavailable` (or :class:`ConnectorManagerError` when etcd rejected the request)."""

    def __init__(self, client: aetcd.Client, *, timeout: float = 2.0) -> None:
        self.client = client
        self.timeout = timeout

    @contextlib.asynccontextmanager
    async def translated(self, what: str) -> AsyncIterator[None]:
        """Translate driver errors raised inside the block (used for streams such as watches)."""
        try:
            yield
        except (aetcd.ClientError, aetcd.rpc.AioRpcError, TimeoutError) as exc:
            if _rejected(exc):  # don't invite a retry that cannot succeed
                raise ConnectorManagerError(f"etcd rejected the {what} request: {_reason(exc)}") from exc
            raise Unavailable(f"etcd is unavailable ({what}: {_reason(exc)})", metadata={"dependency": "etcd"}) from exc

    async def call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op()`` within the deadline. An expired auth token (etcd's simple tokens live 5
        minutes after their last use; aetcd authenticates once per connection) is renewed by
        reconnecting, once."""
        try:
            async with self.translated(what):
                # one budget for both tries, cut to what is left of the request's deadline
                async with asyncio.timeout(remaining(self.timeout)):
                    try:
                        return await op()
                    except aetcd.exceptions.UnauthenticatedError:
                        await self._reconnect()
                        return await op()
        except ConnectorManagerError:
            await self._drop_half_open_channel()
            raise

    async def _drop_half_open_channel(self) -> None:
        """aetcd opens a channel, then authenticates; when that fails the channel stays open and
        the next call opens another one, so an outage with credentials would leak one channel
        per call. Close it; a connected client is left alone (its watches are someone's)."""
        connected = getattr(self.client, "_connected", None)
        if (
            isinstance(connected, asyncio.Event)
            and not connected.is_set()
            and not getattr(self.client, "_is_connecting", False)
            and self.client.channel is not None
        ):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await self.client.close()

    async def _reconnect(self) -> None:
        log.info("etcd rejected the auth token; reconnecting to authenticate again")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await self.client.close()

    # -- key-value ---------------------------------------------------------------------------

    async def get(self, key: str) -> EtcdEntry | None:
        got = await self.call("get", lambda: self.client.get(_b(key)))
        return None if got is None else EtcdEntry.from_kv(got)

    async def get_prefix(self, prefix: str) -> list[EtcdEntry]:
        if prefix:
            got = await self.call("list", lambda: self.client.get_prefix(_b(prefix), sort_order="ascend"))
        else:  # an empty prefix has no "next key": the whole key space
            got = await self.call("list", lambda: self.client.get_all(sort_order="ascend"))
        return [EtcdEntry.from_kv(kv) for kv in got.kvs]

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Unconditional put; returns the new revision (the key's ``mod_revision``)."""
        done = await self.call("put", lambda: self.client.put(_b(key), value, lease=lease or None))
        return int(done.header.revision)

    async def delete(self, key: str) -> bool:
        done = await self.call("delete", lambda: self.client.delete(_b(key)))
        return done is not None and int(done.deleted) > 0

    async def txn(
        self, what: str, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        succeeded, responses = await self.call(
            what, lambda: self.client.transaction(compare=list(compare), success=list(success), failure=list(failure))
        )
        entries: list[EtcdEntry] = []
        deleted = 0
        for response in responses:
            if isinstance(response, list):  # a get: [(value, aetcd.Get), ...]
                entries.extend(EtcdEntry.from_kv(kv) for _, kv in response)
            elif response.WhichOneof("response") == "response_delete_range":
                deleted += int(response.response_delete_range.deleted)
        return TxnResult(bool(succeeded), tuple(entries), deleted)

    # transaction building blocks
    def absent(self, key: str) -> Compare:
        return self.client.transactions.create(_b(key)) == 0

    def mod_is(self, key: str, revision: int) -> Compare:
        return self.client.transactions.mod(_b(key)) == revision

    def created_at(self, key: str, revision: int) -> Compare:
        return self.client.transactions.create(_b(key)) == revision

    def op_put(self, key: str, value: bytes, *, lease: int = 0) -> Op:
        return self.client.transactions.put(_b(key), value, lease=lease or None)

    def op_get(self, key: str) -> Op:
        return self.client.transactions.get(_b(key))

    def op_delete(self, key: str) -> Op:
        return self.client.transactions.delete(_b(key))

    # -- leases ------------------------------------------------------------------------------

    async def grant(self, ttl_seconds: int) -> int:
        """A new lease; etcd may raise the TTL to its minimum (2 s with default raft timing)."""
        lease = await self.call("lease grant", lambda: self.client.lease(ttl_seconds))
        return int(lease.id)

    async def revoke(self, lease_id: int) -> None:
        """Revoke, best effort: an unknown (expired) lease or an outage only leaves it to expire."""
        if not lease_id:
            return
        try:
            await self.call("lease revoke", lambda: self.client.revoke_lease(lease_id))
        except ConnectorManagerError as exc:
            log.debug("etcd lease revoke skipped: %s", exc)

    # -- cluster -----------------------------------------------------------------------------

    async def status(self) -> None:
        await self.call("status", self.client.status)

    async def close(self) -> None:
        with contextlib.suppress(ConnectorManagerError):
            await self.call("close", self.client.close)


class EtcdKeyValueStore:
    """:class:`~connector_core.ports.kv_store.KeyValueStore` on etcd; revisions are ``mod_revision``.

    ``namespace`` is prepended to every key on the wire and stripped from listings (like etcd's
    ``--namespace`` proxy): several deployments or test runs can share one cluster. Values are
    stored as UTF-8; wrap the store in :class:`~adapters.crypto.EncryptedKeyValueStore` so etcd
    only ever holds ciphertext.
    """

    def __init__(self, client: aetcd.Client, *, timeout: float = 2.0, namespace: str = "") -> None:
        self._ops = EtcdOps(client, timeout=timeout)
        self._ns = namespace

    @property
    def client(self) -> aetcd.Client:
        """The underlying client, to share with :class:`~adapters.etcd.EtcdLeaseLock` and the watcher."""
        return self._ops.client

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
        done = await self._ops.txn(
            "compare-and-put",
            [self._guard(wire, expected_revision)],
            [self._ops.op_put(wire, _b(value)), self._ops.op_get(wire)],
        )
        if not done.succeeded:
            raise Conflict(f"key {key!r} changed concurrently")
        return done.entries[0].mod_revision

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
        return f"EtcdKeyValueStore(namespace={self._ns!r}, timeout={self._ops.timeout:g})"


def connect_etcd(
    host: str,
    port: int,
    *,
    user: str | None = None,
    password: str | None = None,
    timeout: float = 2.0,
    namespace: str = "",
) -> EtcdKeyValueStore:
    """Build a store on a new client. No connection is opened here: the first call connects (and
    authenticates when ``user``/``password`` are given)."""
    if (user is None) != (password is None):
        raise ValueError("etcd authentication needs both user and password")
    client = aetcd.Client(
        host=host,
        port=port,
        username=user,
        password=password,
        timeout=timeout,
        options=dict(_CHANNEL_OPTIONS),
        connect_wait_timeout=max(1, round(timeout)),
    )
    return EtcdKeyValueStore(client, timeout=timeout, namespace=namespace)
