"""Contract: TokenStore (metadata queryable, material sealed, version fencing)."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from adapters.crypto import Aead, Keyring
from adapters.sqlite.database import SQLiteDatabase
from adapters.stored_tokens import SET_ASIDE
from connector_core.errors import Conflict, CryptoError, RetryableProviderError, UnreadableRecord
from connector_core.tokens import (
    RefreshPolicy,
    RefreshTokenLimits,
    RefreshWarning,
    TokenLifecycle,
    TokenRecord,
    TokenState,
    TokenStatus,
)
from tests.builders import token_record
from tests.conftest import CountingIds, SeededRandom
from tests.contract.backends import Damageable
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


async def test_the_refresher_reads_include_a_record_exactly_at_the_moment(harness: Harness) -> None:
    """`at or before`: a record due, expired or warned at the very moment asked is in (on
    SecantusDB an inclusive bound of an index range left such a record out for a pass)."""
    now = harness.clock.now()
    rec = token_record(org(), now, expires_in=600, token_id=f"edge-{uuid.uuid4().hex[:6]}")
    rec.track_refresh_deadline(RefreshTokenLimits(max_idle=timedelta(days=90)))
    await _store(harness, rec)
    # at the whole millisecond (what a store keeping milliseconds holds: rounded up)
    due, expires, warn = (
        t + timedelta(microseconds=-t.microsecond % 1000) if t is not None else None
        for t in (rec.refresh_due_at, rec.tokens.expires_at, rec.refresh_warn_at)
    )
    assert due is not None and expires is not None and warn is not None
    async with harness.uow() as uow:
        assert rec.id in [r.id for r in await uow.tokens.due_before(due, 1000)]
        assert rec.id not in [r.id for r in await uow.tokens.due_before(due - timedelta(milliseconds=1), 1000)]
        assert rec.id in [r.id for r in await uow.tokens.expired_unnotified(expires, 1000)]
        assert rec.id in [r.id for r in await uow.tokens.warnings_due(warn, 1000)]


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


# -- refresh-token lineages, summaries and the census -------------------------------------------


async def _store(harness: Harness, *records: TokenRecord) -> None:
    async with harness.uow() as uow:
        for r in records:
            await uow.tokens.add(r)
        await uow.commit()


async def test_the_lineage_and_its_deadline_are_kept(harness: Harness) -> None:
    o = org()
    now = harness.clock.now()
    rec = token_record(o, now, token_id=f"lin-{o}")
    rec.track_refresh_deadline(RefreshTokenLimits(max_idle=timedelta(days=90)))
    rec.announce_expiring(
        RefreshTokenLimits(max_idle=timedelta(days=90)), now=now + timedelta(days=85), ids=CountingIds()
    )
    await _store(harness, rec)
    async with harness.uow() as uow:
        stored = await uow.tokens.get(rec.id)
    assert stored is not None
    assert stored.lineage_started_at == now and stored.refresh_deadline == now + timedelta(days=90)
    assert stored.expiring_announced == (7 * 86400,)
    assert stored.refresh_warn_at == now + timedelta(days=89)


async def test_warnings_due_finds_live_tokens_whose_warning_time_passed(harness: Harness) -> None:
    now = harness.clock.now()
    limits = RefreshTokenLimits(max_idle=timedelta(days=90))
    soon, later, dead, paused = (token_record(org(), now, token_id=f"w{i}-{uuid.uuid4().hex[:6]}") for i in range(4))
    for r in (soon, later, dead, paused):
        r.track_refresh_deadline(limits)
    later.refresh_last_used_at = now + timedelta(days=10)
    later.track_refresh_deadline(limits)
    dead.apply_reauthorization_required(
        RetryableProviderError("x", error_code="invalid_grant"), now=now, ids=CountingIds()
    )
    paused.pause(now=now)
    await _store(harness, soon, later, dead, paused)
    async with harness.uow() as uow:
        assert await uow.tokens.warnings_due(now + timedelta(days=82), 100) == []
        found = await uow.tokens.warnings_due(now + timedelta(days=83), 100)
        assert sorted(r.id for r in found) == sorted([soon.id, paused.id])
        assert len(await uow.tokens.warnings_due(now + timedelta(days=83), 1)) == 1
        found = await uow.tokens.warnings_due(now + timedelta(days=93), 100)
    assert [r.id for r in found][-1] == later.id  # earliest warning first
    assert found[0].tokens.refresh_token == "refresh-secret-value"  # whole records, to be saved


async def test_summaries_list_an_orgs_tokens_without_their_material(harness: Harness) -> None:
    o = org()
    now = harness.clock.now()
    google = token_record(o, now, token_id=f"g-{o}")
    drive = token_record(o, now, key="onedrive", token_id=f"d-{o}", ids=CountingIds("other"))
    await _store(harness, google, drive, token_record(org(), now, token_id=f"x-{o}"))
    async with harness.uow() as uow:
        found = await uow.tokens.summaries(o)
        assert [s.connector_key for s in found] == ["googleWorkspace", "onedrive"]
        assert found[0] == google.summary()
        # the unit of work's own staged change shows
        google.pause(now=now)
        await uow.tokens.save(google)
        assert (await uow.tokens.summaries(o))[0].status == TokenStatus.PAUSED
    assert "secret" not in repr(found)


async def test_census_counts_tokens_by_state_and_warning(harness: Harness) -> None:
    now = harness.clock.now()
    policy = RefreshPolicy(margin=timedelta(minutes=10), jitter=timedelta(0))
    lifecycle = TokenLifecycle(policy, SeededRandom())
    limits = RefreshTokenLimits(max_idle=timedelta(days=90))

    def make(key: str = "googleWorkspace", expires_in: float = 3600) -> TokenRecord:
        rec = token_record(org(), now, key=key, expires_in=expires_in, policy=policy, token_id=uuid.uuid4().hex)
        rec.track_refresh_deadline(limits)
        return rec

    active, due, resting, reauth, paused, revoked = (make(expires_in=e) for e in (3600, 60, 60, 60, 60, 60))
    due.refresh_due_at = now - timedelta(seconds=1)
    resting.apply_retryable_failure(RetryableProviderError("down"), lifecycle=lifecycle, now=now)
    reauth.apply_reauthorization_required(
        RetryableProviderError("x", error_code="invalid_grant"), now=now, ids=CountingIds()
    )
    paused.pause(now=now)
    revoked.revoke(now=now, ids=CountingIds())
    drive = make(key="onedrive", expires_in=7200)
    drive.lineage_started_at = now - timedelta(days=100)
    drive.refresh_last_used_at = now - timedelta(days=89, hours=12)  # dies in 12 hours
    drive.track_refresh_deadline(limits)
    await _store(harness, active, due, resting, reauth, paused, revoked, drive)
    async with harness.uow() as uow:
        census = await uow.tokens.census(now)
    assert dict(census.states) == {
        ("googleWorkspace", TokenState.ACTIVE): 1,
        ("googleWorkspace", TokenState.DUE): 1,
        ("googleWorkspace", TokenState.RESTING): 1,
        ("googleWorkspace", TokenState.NEEDS_REAUTH): 1,
        ("googleWorkspace", TokenState.PAUSED): 1,
        ("googleWorkspace", TokenState.REVOKED): 1,
        ("onedrive", TokenState.ACTIVE): 1,
    }
    # the soonest expiry of ACTIVE tokens only (the due one: 60 s), to the millisecond
    assert abs(census.soonest_expiry["googleWorkspace"] - (now + timedelta(seconds=60))) < timedelta(milliseconds=2)
    assert abs(census.soonest_expiry["onedrive"] - (now + timedelta(seconds=7200))) < timedelta(milliseconds=2)
    assert dict(census.expiring) == {("onedrive", RefreshWarning.WITHIN_1_DAY): 1}
    async with harness.uow() as uow:
        later = await uow.tokens.census(now + timedelta(days=84))
    # live google tokens (active, due, resting, paused) are within 7 days then; the others are not live
    assert later.expiring[("googleWorkspace", RefreshWarning.WITHIN_7_DAYS)] == 4
    assert later.expiring[("onedrive", RefreshWarning.EXPIRED)] == 1


@pytest.mark.sqlite
async def test_an_older_sqlite_file_gets_the_lineage_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # the tokens table as the first release made it
        old.execute(
            "CREATE TABLE tokens (id TEXT PRIMARY KEY, org_id TEXT NOT NULL, connector_key TEXT NOT NULL,"
            " status TEXT NOT NULL, refresh_due_at REAL, next_attempt_at REAL, expires_at REAL,"
            " expiry_notified INTEGER NOT NULL, version INTEGER NOT NULL, meta TEXT NOT NULL,"
            " material TEXT NOT NULL, UNIQUE (org_id, connector_key))"
        )
    old.close()
    db = SQLiteDatabase(path, sealer=Aead(Keyring.generate()))
    try:
        columns = await db.run(lambda c: [row[1] for row in c.execute("PRAGMA table_info(tokens)")])
        indexes = await db.run(lambda c: [row[1] for row in c.execute("PRAGMA index_list(tokens)")])
    finally:
        await db.aclose()
    assert {"refresh_deadline", "refresh_warn_at"} <= set(columns)
    assert "tokens_warn" in indexes


@pytest.mark.parametrize("field", ["material", "meta"])
async def test_an_unreadable_record_fails_alone_and_is_set_aside_by_batch_reads(
    damageable: Damageable, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A record whose stored data cannot be read is that record's error: reading it names it;
    the refresher's batch read returns the others and sets it aside (logged once, not read again
    every pass, not crowding out the records behind it) until the set-aside time is over."""
    harness = damageable.storage
    now = harness.clock.now()
    due = now - timedelta(minutes=1)
    broken, fine = (token_record(o, now, expires_in=-60, token_id=f"t-{o}") for o in (org(), org()))
    async with harness.uow() as uow:
        for rec in (broken, fine):
            rec.refresh_due_at = due
            await uow.tokens.add(rec)
        await uow.commit()
    await damageable.damage(broken.id, field)

    async with harness.uow() as uow:
        with pytest.raises(UnreadableRecord) as unreadable:
            await uow.tokens.get(broken.id)
        assert unreadable.value.record_id == broken.id and isinstance(unreadable.value, CryptoError)
        assert [r.id for r in await uow.tokens.due_before(now, 1)] == [fine.id]  # not crowded out
        assert [r.id for r in await uow.tokens.expired_unnotified(now, 10)] == [fine.id]
        assert [r.id for r in await uow.tokens.due_before(now, 10)] == [fine.id]
    logged = [r for r in caplog.records if broken.id in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelname == "ERROR"  # set aside: not read again
    assert "not-a-sealed" not in caplog.text and "not text" not in caplog.text

    later = now + SET_ASIDE + timedelta(seconds=1)
    async with harness.uow() as uow:
        assert [r.id for r in await uow.tokens.due_before(later, 10)] == [fine.id]
    assert len([r for r in caplog.records if broken.id in r.getMessage()]) == 2  # tried again, once


@pytest.mark.parametrize("moved", ["org_id", "org_id column"])
async def test_a_record_moved_to_another_org_does_not_open_there(damageable: Damageable, moved: str) -> None:
    """Its material names the org and connector it was sealed for, and its metadata must name
    the org it was found for: moved to another org by someone who can write to the store but has
    no key (the org in its columns and metadata, or in its columns alone), it is unreadable
    there, never that org's token."""
    harness = damageable.storage
    o = org()
    now = harness.clock.now()
    record = token_record(o, now, token_id=f"t-{o}")
    await _store(harness, record)
    await damageable.damage(record.id, moved)
    async with harness.uow() as uow:
        with pytest.raises(UnreadableRecord) as unreadable:
            await uow.tokens.get_for_connector(f"moved-{record.id}", record.connector_key)
    assert unreadable.value.record_id == record.id
    assert "access-secret-value" not in str(unreadable.value)


async def test_a_damaged_record_is_left_out_of_the_summaries_and_logged_once(
    damageable: Damageable, caplog: pytest.LogCaptureFixture
) -> None:
    """The connector list's token outlook reads every record's metadata of the org: one that
    cannot be read is left out (the others are listed), and said once, not on every list."""
    harness = damageable.storage
    o = org()
    now = harness.clock.now()
    google = token_record(o, now, token_id=f"g-{o}")
    drive = token_record(o, now, key="onedrive", token_id=f"d-{o}", ids=CountingIds("other"))
    await _store(harness, google, drive)
    await damageable.damage(google.id, "meta")
    for _ in range(3):
        async with harness.uow() as uow:
            assert await uow.tokens.summaries(o) == [drive.summary()]
    logged = [r for r in caplog.records if google.id in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelname == "ERROR"
    assert "not text" not in caplog.text and "not a token set" not in caplog.text
