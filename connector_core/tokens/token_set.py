"""What a token endpoint granted: :class:`TokenSet`, parsed from its JSON answer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from attrs import evolve, field, frozen

from connector_core.errors import ValidationError

__all__ = ["TokenSet"]


def _scopes(raw: Any, separator: str) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if isinstance(raw, str):
        parts = raw.replace(",", " ").split() if separator in (" ", ",") else raw.split(separator)
        return frozenset(p for p in (s.strip() for s in parts) if p)
    if isinstance(raw, Iterable):
        return frozenset(str(s) for s in raw)
    return frozenset()


def _to_frozenset(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


@frozen
class TokenSet:
    """What a token endpoint granted. Secrets never show in ``repr``."""

    access_token: str = field(repr=False)
    obtained_at: datetime
    token_type: str = "Bearer"
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    refresh_token_expires_at: datetime | None = None
    scopes: frozenset[str] = field(factory=frozenset, converter=_to_frozenset)
    id_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_token_response(
        cls,
        data: Mapping[str, Any],
        *,
        now: datetime,
        scope_separator: str = " ",
        requested_scopes: Iterable[str] = (),
    ) -> TokenSet:
        """Build from a token endpoint's JSON. Without ``scope`` the requested scopes were granted
        (RFC 6749 §5.1)."""
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise ValidationError.for_field("access_token", "missing from the token response")
        refresh = data.get("refresh_token")
        expires_in = _seconds(data.get("expires_in"))
        refresh_expires_in = _seconds(data.get("refresh_token_expires_in", data.get("refresh_expires_in")))
        granted = _scopes(data.get("scope"), scope_separator)
        id_token = data.get("id_token")
        return cls(
            access_token=access,
            obtained_at=now,
            token_type=str(data.get("token_type") or "Bearer"),
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=None if expires_in is None else now + timedelta(seconds=expires_in),
            refresh_token_expires_at=(
                None if refresh_expires_in is None else now + timedelta(seconds=refresh_expires_in)
            ),
            scopes=granted or frozenset(requested_scopes),
            id_token=id_token if isinstance(id_token, str) and id_token else None,
        )

    def refreshed(self, data: Mapping[str, Any], *, now: datetime, scope_separator: str = " ") -> TokenSet:
        """Apply a refresh response: keep the old refresh token when none comes back, take the
        rotated one when it does; keep the scopes when the answer names none."""
        new = TokenSet.from_token_response(data, now=now, scope_separator=scope_separator, requested_scopes=self.scopes)
        return evolve(
            new,
            refresh_token=new.refresh_token or self.refresh_token,
            refresh_token_expires_at=(
                new.refresh_token_expires_at if new.refresh_token else self.refresh_token_expires_at
            ),
            id_token=new.id_token or self.id_token,
        )

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @property
    def can_refresh(self) -> bool:
        return self.refresh_token is not None


_MAX_LIFETIME_SECONDS = 100 * 365 * 86400


def _seconds(raw: Any) -> float | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    # negative, NaN, infinite or absurd (over ~100 years) lifetimes mean "unknown"
    return value if 0 <= value <= _MAX_LIFETIME_SECONDS else None
