"""Bearer tokens are parsed and their signature checked once; a later use of the same token
only has its expiry checked again, and a token is never taken as verified for another secret."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from connector_core.errors import Unauthenticated
from entrypoints.http import auth
from entrypoints.http.auth import issue_user_token, user_principal

SECRET = "the-jwt-secret-of-this-test-0123456789"


def token(ttl: int = 600, secret: str = SECRET) -> str:
    now = int(time.time())
    return issue_user_token(secret, user_id="u1", org_id="acme", email="u1@acme.example", admin=False, ttl=ttl, now=now)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every signature check PyJWT makes, by token."""
    seen: list[str] = []
    real = jwt.decode

    def counting(t: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(t)
        return real(t, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    monkeypatch.setattr(auth, "_VERIFIED", {})
    return seen


def test_a_token_used_again_is_not_verified_again(decodes: list[str]) -> None:
    t = token()
    for _ in range(3):
        assert user_principal(t, SECRET).org_id == "acme"
    assert decodes == [t]


def test_a_verified_token_is_refused_once_it_expired(decodes: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    t = token(ttl=60)
    user_principal(t, SECRET)
    monkeypatch.setattr(auth, "_now", lambda: time.time() + 61)
    with pytest.raises(Unauthenticated, match="expired"):
        user_principal(t, SECRET)


def test_a_token_verified_for_one_secret_is_not_accepted_with_another(decodes: list[str]) -> None:
    t = token()
    user_principal(t, SECRET)
    with pytest.raises(Unauthenticated):
        user_principal(t, "another-secret-after-a-rotation-0123456789")


def test_the_claims_handed_out_are_copies(decodes: list[str]) -> None:
    t = token()
    claims = user_principal(t, SECRET).claims
    assert isinstance(claims, dict)
    claims["orgId"] = "tampered"
    assert user_principal(t, SECRET).org_id == "acme"


def test_the_verified_tokens_stay_bounded(decodes: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_VERIFIED_MAX", 5)
    for ttl in range(100, 120):
        user_principal(token(ttl=ttl), SECRET)
    assert len(auth._VERIFIED) == 5
