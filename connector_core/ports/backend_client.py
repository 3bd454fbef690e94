"""Backend connector service port: the Python service that runs connector implementations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from attrs import frozen


@frozen
class BackendResponse:
    status: int
    body: bytes
    content_type: str | None = None


class BackendConnectorClient(Protocol):
    async def forward(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        query: Mapping[str, str] | None = None,
    ) -> BackendResponse:
        """Forward a request. Retries network errors (and 5xx when idempotent) 3 times with
        backoff; unreachable → :class:`Unavailable`. Other statuses are returned as they are."""
        ...

    async def check(self) -> bool:
        """True when the backend answers."""
        ...
