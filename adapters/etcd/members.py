"""The members of one etcd cluster, and which one a call goes to.

``aetcd`` talks to one ``host:port``. A cluster of three survives the loss of a member only if
its clients do too, so :class:`EtcdMembers` keeps one client per member (each with its own gRPC
channel and, with a user, its own auth token: etcd's simple tokens are per member) and:

- sends every call to the **member in use** (the same one while it answers: its watch and its
  auth token stay warm);
- when that member fails a call (times out, refuses the connection, has no leader), marks it
  **suspect** and sends the call to the next member, within the same budget: a member gets at
  most ``member_timeout`` of it while others are left to try, so a frozen member costs a call
  one such timeout, not its whole deadline;
- never sends a call to a suspect member while a healthy one is left: a background **probe**
  asks the suspect for its status (answered by the member itself, leader or not) until it
  answers, and only then is it used again.

What a call that failed over may have done on the first member: a request that reached a member
which then froze (or a leader killed mid-commit) may still be applied. Every write of the etcd
adapters is either guarded by a compare in a transaction, so it cannot apply twice, or reads
back what it wrote (:meth:`adapters.etcd.kv_store.EtcdOps.put_guarded`), so a retry that finds
its own earlier attempt applied reports success instead of a conflict.

TLS: give the CA that signed the members' certificates (and a client certificate when the
cluster asks for one); every channel is then a TLS channel, its server checked against that CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aetcd
import grpc
from aetcd import rpc
from attrs import field, frozen

from adapters.etcd.errors import translate_errors
from connector_core.deadline import remaining
from connector_core.errors import ConnectorManagerError, Unavailable

__all__ = ["EtcdMember", "EtcdMembers", "TlsMaterial"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: gRPC retries a refused connection with exponential backoff up to 120 s by default, and RPCs
#: fail fast meanwhile; after an etcd restart that would look like a minutes-long outage. At most
#: 0.5 s between attempts: writes are back within a second of etcd.
CHANNEL_OPTIONS: dict[str, Any] = {
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 500,
    # notice a silently dead peer (no RST) on an idle watch stream
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    # gRPC shares one connection per address across a process's channels by default, with its
    # failure state: a client made after a member came back could inherit "connection refused"
    # from an older client's attempt while the member was down, and avoid a member that answers
    "grpc.use_local_subchannel_pool": 1,
}


@frozen
class TlsMaterial:
    """PEM bytes for TLS channels: the CA to check members against (None: the system's), and an
    optional client certificate with its key."""

    ca: bytes | None = field(default=None, repr=False)
    cert: bytes | None = field(default=None, repr=False)
    key: bytes | None = field(default=None, repr=False)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


class _TlsClient(aetcd.Client):  # type: ignore[misc]  # aetcd is untyped
    """``aetcd.Client`` on a TLS channel (aetcd itself only opens plaintext ones).

    ``connect`` is aetcd 1.0's, with ``secure_channel`` in place of ``insecure_channel``."""

    _is_connecting: bool

    def __init__(self, *args: Any, tls: TlsMaterial, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tls = tls

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._is_connecting:
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        try:
            self._is_connecting = True
            target = f"{self._host}:{self._port}"
            self.channel = rpc.secure_channel(target, self._tls.credentials(), options=self._options.items())
            if self._username is not None and self._password is not None:
                self.auth_stub = rpc.AuthStub(self.channel)
                request = rpc.AuthenticateRequest(name=self._username, password=self._password)
                try:
                    resp = await self.auth_stub.Authenticate(request, timeout=self._timeout)
                except rpc.AioRpcError as exc:
                    aetcd.exceptions._handle_exception(exc)
                self.metadata = (("token", resp.token),)
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = aetcd.watcher.Watcher(
                rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        finally:
            self._is_connecting = False


class EtcdMember:
    """One member: its endpoint, its client, and whether it is suspect."""

    def __init__(self, host: str, port: int, client: aetcd.Client) -> None:
        self.host, self.port, self.client = host, port, client
        self.suspect = False
        self.probe: asyncio.Task[None] | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"EtcdMember({self.endpoint!r}, suspect={self.suspect})"


class EtcdMembers:
    """One client per member of a cluster; :meth:`call` runs an operation on the member in use
    and fails over (module doc). A single endpoint works as before: one member, no failover."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        *,
        user: str | None = None,
        password: str | None = None,
        tls: TlsMaterial | None = None,
        timeout: float = 2.0,
        member_timeout: float = 0.5,
        probe_interval: float = 0.25,
    ) -> None:
        if not endpoints:
            raise ValueError("etcd needs at least one endpoint")
        if (user is None) != (password is None):
            raise ValueError("etcd authentication needs both user and password")
        self.timeout = timeout
        self.member_timeout = min(member_timeout, timeout)
        self.probe_interval = probe_interval
        self.tls = tls is not None
        self.members = [EtcdMember(h, p, _client(h, p, user, password, tls, timeout)) for h, p in endpoints]
        self._current = 0
        self._closed = False

    @property
    def current(self) -> EtcdMember:
        """The member calls go to first."""
        return self.members[self._current]

    def order(self) -> list[EtcdMember]:
        """The members to try, in order: the one in use, the other healthy ones, then the suspects."""
        n = len(self.members)
        ring = [self.members[(self._current + i) % n] for i in range(n)]
        return [m for m in ring if not m.suspect] + [m for m in ring if m.suspect]

    async def call(self, what: str, op: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """``await op(client)`` on the member in use, failing over to the next within one budget
        (``timeout`` cut to the request's deadline). Raises :class:`Unavailable` when no member
        answered, :class:`ConnectorManagerError` when one answered with a refusal."""
        end = time.monotonic() + remaining(self.timeout)
        order = self.order()
        failure: Unavailable | None = None
        for i, member in enumerate(order):
            left = end - time.monotonic()
            if left <= 0 and failure is not None:
                break
            # the last member to try gets all that is left; the others one member timeout each
            share = left if i == len(order) - 1 else min(left, self.member_timeout)
            try:
                async with translate_errors(what):
                    async with asyncio.timeout(max(share, 0.001)):
                        result = await _authenticated(member.client, op)
            except Unavailable as exc:
                failure = exc
                self._suspect(member, exc)
                await _drop_half_open_channel(member.client, self.member_timeout)
                continue
            except ConnectorManagerError:
                await _drop_half_open_channel(member.client, self.member_timeout)
                raise
            self._use(member)
            return result
        assert failure is not None
        raise failure

    def _use(self, member: EtcdMember) -> None:
        index = self.members.index(member)
        if index != self._current and not member.suspect:
            log.info("etcd: using member %s", member.endpoint)
            self._current = index

    def _suspect(self, member: EtcdMember, exc: ConnectorManagerError) -> None:
        """Avoid ``member`` until it answers a probe (a single member is never avoided: there is
        no other; its calls simply fail until it is back)."""
        if len(self.members) == 1 or member.suspect or self._closed:
            return
        member.suspect = True
        log.warning("etcd member %s avoided until it answers (%s)", member.endpoint, exc.message)
        # A context of its own: the request that noticed must not lend its deadline to the probe.
        member.probe = asyncio.get_running_loop().create_task(
            self._probe(member), name=f"etcd probe {member.endpoint}", context=contextvars.Context()
        )
        if self.current is member:
            healthy = [m for m in self.order() if not m.suspect]
            if healthy:
                self._current = self.members.index(healthy[0])

    def suspect(self, member: EtcdMember, reason: str) -> None:
        """Mark ``member`` suspect from outside a call (a watch that stopped hearing from it)."""
        self._suspect(member, Unavailable(reason))

    async def _probe(self, member: EtcdMember) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            if await status(member.client, self.member_timeout):
                member.suspect = False
                member.probe = None
                log.warning("etcd member %s answers again", member.endpoint)
                return

    async def aclose(self) -> None:
        """Stop probing and close every member's client."""
        self._closed = True
        probes = [m.probe for m in self.members if m.probe is not None]
        for probe in probes:
            probe.cancel()
        for probe in probes:
            with contextlib.suppress(asyncio.CancelledError):
                await probe
        for member in self.members:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await member.client.close()

    def __repr__(self) -> str:
        return f"EtcdMembers({[m.endpoint for m in self.members]!r}, tls={self.tls})"


async def status(client: aetcd.Client, seconds: float) -> bool:
    """Whether the member behind ``client`` answers a status request within ``seconds`` (the
    member answers it itself, without its leader); never raises."""
    try:
        async with asyncio.timeout(seconds):
            await client.connect()
            await client.maintenancestub.Status(rpc.StatusRequest(), timeout=seconds, metadata=client.metadata)
    except Exception:  # a probe answers; it never raises
        await _drop_half_open_channel(client, seconds)
        return False
    return True


async def _authenticated(client: aetcd.Client, op: Callable[[aetcd.Client], Awaitable[T]]) -> T:
    """``op(client)``; an expired auth token (etcd's simple tokens live 5 minutes after their last
    use; aetcd authenticates once per connection) is renewed by reconnecting, once."""
    try:
        return await op(client)
    except aetcd.exceptions.UnauthenticatedError:
        log.info("etcd rejected the auth token; reconnecting to authenticate again")
        with contextlib.suppress(Exception):
            await client.close()
        return await op(client)


async def _drop_half_open_channel(client: aetcd.Client, seconds: float) -> None:
    """aetcd opens a channel, then authenticates; when that fails the channel stays open and the
    next call opens another one, so an outage with credentials would leak one channel per call.
    Close it; a connected client is left alone (its watches are someone's)."""
    connected = getattr(client, "_connected", None)
    if (
        isinstance(connected, asyncio.Event)
        and not connected.is_set()
        and not getattr(client, "_is_connecting", False)
        and client.channel is not None
    ):
        with contextlib.suppress(Exception):
            async with asyncio.timeout(seconds):
                await client.close()


def _client(
    host: str, port: int, user: str | None, password: str | None, tls: TlsMaterial | None, timeout: float
) -> aetcd.Client:
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "username": user,
        "password": password,
        "timeout": timeout,
        "options": dict(CHANNEL_OPTIONS),
        "connect_wait_timeout": max(1, round(timeout)),
    }
    return aetcd.Client(**options) if tls is None else _TlsClient(**options, tls=tls)
