"""Identity and access port: who is calling and what they may do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from attrs import field, frozen


@frozen
class Principal:
    """An authenticated caller. Scoped (service) callers have ``scopes`` and no user."""

    user_id: str | None
    org_id: str | None
    email: str | None = None
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(factory=dict, repr=False)

    @property
    def is_service(self) -> bool:
        return self.user_id is None


class IdentityAccess(Protocol):
    async def is_admin(self, principal: Principal) -> bool:
        """Whether the user administers their org."""
        ...
