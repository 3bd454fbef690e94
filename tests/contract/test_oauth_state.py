"""Contract: OAuthStateStore (each state usable once)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from connector_core.ports.oauth_state import PendingAuthorization
from tests.contract.conftest import Harness


def pending(harness: Harness, minutes: float = 10) -> PendingAuthorization:
    return PendingAuthorization(
        state_hash=uuid.uuid4().hex,
        org_id="o1",
        user_id="u1",
        connector_key="googleWorkspace",
        redirect_uri="https://app.example.com/cb",
        expires_at=harness.clock.now() + timedelta(minutes=minutes),
        code_verifier="PLANTED-VERIFIER",
        nonce="n-1",
        scopes=("openid",),
    )


async def test_take_once(harness: Harness) -> None:
    p = pending(harness)
    await harness.states.put(p)
    assert await harness.states.take(p.state_hash) == p
    assert await harness.states.take(p.state_hash) is None


async def test_concurrent_takes_have_one_winner(harness: Harness) -> None:
    p = pending(harness)
    await harness.states.put(p)
    got = await asyncio.gather(*(harness.states.take(p.state_hash) for _ in range(10)))
    assert [g for g in got if g is not None] == [p]


async def test_purge_expired(harness: Harness) -> None:
    old, fresh = pending(harness, minutes=-1), pending(harness, minutes=10)
    await harness.states.put(old)
    await harness.states.put(fresh)
    assert await harness.states.purge_expired(harness.clock.now()) >= 1
    assert await harness.states.take(old.state_hash) is None
    assert await harness.states.take(fresh.state_hash) == fresh


async def test_verifier_never_in_repr(harness: Harness) -> None:
    assert "PLANTED-VERIFIER" not in repr(pending(harness))
