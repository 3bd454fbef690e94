"""OAuth state store port: pending authorizations, each usable once."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from attrs import field, frozen


@frozen
class PendingAuthorization:
    """What an authorize call promised: bound to org, user, connector, redirect URI and the
    PKCE verifier. ``state_hash`` is a hash of the ``state`` value (the value is not stored)."""

    state_hash: str
    org_id: str
    user_id: str
    connector_key: str
    redirect_uri: str
    expires_at: datetime
    code_verifier: str | None = field(default=None, repr=False)
    nonce: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ()


class OAuthStateStore(Protocol):
    async def put(self, pending: PendingAuthorization) -> None:
        """Store a pending authorization."""
        ...

    async def take(self, state_hash: str) -> PendingAuthorization | None:
        """Atomically remove and return it; a second take of the same state gets None, even
        from another process."""
        ...

    async def purge_expired(self, moment: datetime) -> int:
        """Drop entries that expired before ``moment``; returns how many."""
        ...
