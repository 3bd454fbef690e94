"""Contract: TokenStore (metadata queryable, material sealed, version fencing)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from connector_core.errors import Conflict, RetryableProviderError
from connector_core.tokens import RefreshPolicy, TokenLifecycle, TokenRecord, TokenStatus
from tests.builders import token_record
from tests.conftest import CountingIds, SeededRandom
from tests.contract.conftest import Harness


def org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


async def test_round_trip_keeps_material_and_metadata(harness: Harness) -> None:
    o = org()
    rec = token_record(o, harness.clock.now(), token_id=f"t-{o}")
    async with harness.uow() as uow:
        await uow.tokens.add(rec)
        await uow.outbox.add(rec.pull_events())
        await uow.commit()
    assert rec.version == 1
    async with harness.uow() as uow:
        by_id = await uow.tokens.get(rec.id)
        by_connector = await uow.tokens.get_for_connector(o, "googleWorkspace")
    assert by_id == rec == by_connector
    assert by_id is not None and by_id.tokens.access_token == "access-secret-value"
    assert by_id.tokens.refresh_token == "refresh-secret-value"
    events = [m.event for m in await harness.outbox.recent(50) if m.event.org_id == o]
    assert [e.event_type for e in events] == ["TOKEN_CREATED"]


@pytest.mark.sqlite
async def test_material_is_not_stored_in_the_clear(sqlite_harness: Harness) -> None:
    harness = sqlite_harness
    o = org()
    rec = token_record(o, harness.clock.now(), access="PLANTED-ACCESS", refresh="PLANTED-REFRESH")
    async with harness.uow() as uow:
        await uow.tokens.add(rec)
        await uow.commit()
    db = harness.extra
    await db.run(lambda c: c.execute("PRAGMA wal_checkpoint(FULL)").fetchall())
    raw = Path(db.path).read_bytes() + Path(db.path + "-wal").read_bytes()
    assert b"PLANTED-ACCESS" not in raw and b"PLANTED-REFRESH" not in raw
    assert b"googleWorkspace" in raw  # metadata is queryable, so it is there


async def test_one_record_per_connector(harness: Harness) -> None:
    o = org()
    now = harness.clock.now()
    async with harness.uow() as uow:
        await uow.tokens.add(token_record(o, now))
        await uow.commit()
    with pytest.raises(Conflict):
        async with harness.uow() as uow:
            await uow.tokens.add(token_record(o, now, ids=CountingIds("other")))
            await uow.commit()


async def test_stale_writer_is_fenced_off(harness: Harness) -> None:
    """A worker that loaded version 1 cannot overwrite what another worker saved since."""
    o = org()
    now = harness.clock.now()
    ids = CountingIds("e")
    lifecycle = TokenLifecycle(RefreshPolicy(), SeededRandom())
    async with harness.uow() as uow:
        await uow.tokens.add(token_record(o, now, token_id=f"t-{o}"))
        await uow.commit()
    async with harness.uow() as uow:
        fast = await uow.tokens.get(f"t-{o}")
    async with harness.uow() as uow:
        slow = await uow.tokens.get(f"t-{o}")
    assert fast is not None and slow is not None
    fast.apply_refresh(
        fast.tokens.refreshed({"access_token": "new-a", "refresh_token": "new-r", "expires_in": 60}, now=now),
        lifecycle=lifecycle,
        now=now,
        ids=ids,
    )
    async with harness.uow() as uow:
        await uow.tokens.save(fast)
        await uow.commit()
    slow.apply_refresh(
        slow.tokens.refreshed({"access_token": "old-a", "expires_in": 60}, now=now),
        lifecycle=lifecycle,
        now=now,
        ids=ids,
    )
    with pytest.raises(Conflict):
        async with harness.uow() as uow:
            await uow.tokens.save(slow)
            await uow.outbox.add(slow.pull_events())
            await uow.commit()
    async with harness.uow() as uow:
        stored = await uow.tokens.get(f"t-{o}")
    assert stored is not None
    assert stored.tokens.refresh_token == "new-r" and stored.version == 2


async def test_due_before_orders_limits_and_respects_backoff(harness: Harness) -> None:
    now = harness.clock.now()
    policy = RefreshPolicy(margin=timedelta(minutes=10), jitter=timedelta(0))
    lifecycle = TokenLifecycle(policy, SeededRandom())
    recs = [
        token_record(
            org(),
            now,
            expires_in=secs,
            token_id=f"due-{secs}-{uuid.uuid4().hex[:4]}",
            policy=policy,
        )
        for secs in (700, 1300, 900, 5000)
    ]
    no_refresh = token_record(org(), now, expires_in=100, refresh=None, policy=policy)
    async with harness.uow() as uow:
        for r in [*recs, no_refresh]:
            await uow.tokens.add(r)
        await uow.commit()
    moment = now + timedelta(minutes=12)  # due: 700s (at 100s), 900s (at 300s), 1300s (at 700s)
    due = await _due(harness, moment, 10)
    assert [r.id.split("-")[1] for r in due] == ["700", "900", "1300"]
    assert [r.id.split("-")[1] for r in await _due(harness, moment, 2)] == ["700", "900"]
    # a failed token rests until next_attempt_at
    first = due[0]
    first.apply_retryable_failure(RetryableProviderError("down", status=503), lifecycle=lifecycle, now=moment)
    async with harness.uow() as uow:
        await uow.tokens.save(first)
        await uow.commit()
    assert first.id not in [r.id for r in await _due(harness, moment, 10)]
    later = first.next_attempt_at
    assert later is not None
    assert first.id in [r.id for r in await _due(harness, later + timedelta(seconds=1), 10)]


async def _due(harness: Harness, moment: datetime, limit: int) -> list[TokenRecord]:
    async with harness.uow() as uow:
        found = await uow.tokens.due_before(moment, 1000)
    mine = [r for r in found if r.id.startswith("due-")]
    return mine[:limit]


async def test_needs_reauth_and_revoked_are_never_due(harness: Harness) -> None:
    o = org()
    now = harness.clock.now()
    rec = token_record(o, now, expires_in=60, token_id=f"dead-{o}")
    rec.apply_reauthorization_required(
        RetryableProviderError("x", error_code="invalid_grant"), now=now, ids=CountingIds()
    )
    assert rec.status == TokenStatus.NEEDS_REAUTHENTICATION
    async with harness.uow() as uow:
        await uow.tokens.add(rec)
        await uow.commit()
    async with harness.uow() as uow:
        due = await uow.tokens.due_before(now + timedelta(days=1), 1000)
    assert rec.id not in [r.id for r in due]


async def test_expired_unnotified(harness: Harness) -> None:
    o = org()
    now = harness.clock.now()
    ids = CountingIds()
    rec = token_record(o, now, expires_in=60, token_id=f"exp-{o}")
    async with harness.uow() as uow:
        await uow.tokens.add(rec)
        await uow.commit()
    async with harness.uow() as uow:
        assert rec.id not in [r.id for r in await uow.tokens.expired_unnotified(now, 1000)]
        found = [r for r in await uow.tokens.expired_unnotified(now + timedelta(seconds=61), 1000) if r.id == rec.id]
    assert len(found) == 1
    assert found[0].check_expiry(now=now + timedelta(seconds=61), ids=ids)
    async with harness.uow() as uow:
        await uow.tokens.save(found[0])
        await uow.commit()
    async with harness.uow() as uow:
        again = await uow.tokens.expired_unnotified(now + timedelta(seconds=61), 1000)
    assert rec.id not in [r.id for r in again]


async def test_delete_with_version_check(harness: Harness) -> None:
    o = org()
    rec = token_record(o, harness.clock.now(), token_id=f"del-{o}")
    async with harness.uow() as uow:
        await uow.tokens.add(rec)
        await uow.commit()
    async with harness.uow() as uow:
        loaded = await uow.tokens.get(rec.id)
        assert loaded is not None
        await uow.tokens.delete(loaded)
        assert await uow.tokens.get(rec.id) is None
        await uow.commit()
    async with harness.uow() as uow:
        assert await uow.tokens.get(rec.id) is None
        assert await uow.tokens.get_for_connector(o, "googleWorkspace") is None
