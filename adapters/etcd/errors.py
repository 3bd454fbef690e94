"""The one place where ``aetcd`` and gRPC errors become ours.

``aetcd`` is untyped and raises its own exceptions (and plain ``TimeoutError`` while another task
is connecting); inside :func:`translate_errors` they become :class:`Unavailable` (etcd could not
be asked: try another member, or answer 503) or :class:`ConnectorManagerError` (etcd answered and
refused: a bug, a limit or a misconfiguration, not worth a retry). Messages are secret-free:
gRPC details name addresses and states, never values, and only the code is kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aetcd

from connector_core.errors import ConnectorManagerError, Unavailable

__all__ = ["translate_errors"]


def _grpc_code(exc: BaseException) -> Any:
    """The gRPC status code behind an aetcd error (aetcd keeps the RPC error as the cause)."""
    for err in (exc, exc.__cause__):
        if isinstance(err, aetcd.rpc.AioRpcError):
            return err.code()
    return None


def _reason(exc: BaseException) -> str:
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


@contextlib.asynccontextmanager
async def translate_errors(what: str) -> AsyncIterator[None]:
    """Translate driver errors raised inside the block (a call, or a stream such as a watch)."""
    try:
        yield
    except (aetcd.ClientError, aetcd.rpc.AioRpcError, TimeoutError) as exc:
        if _rejected(exc):  # don't invite a retry that cannot succeed
            raise ConnectorManagerError(f"etcd rejected the {what} request: {_reason(exc)}") from exc
        raise Unavailable(f"etcd is unavailable ({what}: {_reason(exc)})", metadata={"dependency": "etcd"}) from exc
