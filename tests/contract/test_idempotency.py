"""Contract: IdempotencyStore (one claim per key and org; answers kept until they expire)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from connector_core.ports.idempotency import StoredAnswer
from tests.contract.backends import IdempotencyUnderTest

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOLD = NOW + timedelta(seconds=60)
DAY = NOW + timedelta(days=1)
ANSWER = StoredAnswer(200, b'{"message": "Jira enabled"}')


def key() -> str:
    return f"k-{uuid.uuid4().hex}"


async def test_the_first_claim_wins_and_later_ones_see_it(idempotency: IdempotencyUnderTest) -> None:
    store, k = idempotency.store, key()
    assert await store.claim("o1", k, fingerprint="f1", claim_id="c1", now=NOW, until=HOLD) is None
    found = await store.claim("o1", k, fingerprint="f2", claim_id="c2", now=NOW, until=HOLD)
    assert found is not None
    assert (found.fingerprint, found.claim_id, found.answer) == ("f1", "c1", None)
    assert found.expires_at >= HOLD


async def test_keys_are_per_org(idempotency: IdempotencyUnderTest) -> None:
    store, k = idempotency.store, key()
    assert await store.claim("o1", k, fingerprint="f", claim_id="c1", now=NOW, until=HOLD) is None
    assert await store.claim("o2", k, fingerprint="f", claim_id="c2", now=NOW, until=HOLD) is None


async def test_a_completed_answer_is_returned_until_it_expires(idempotency: IdempotencyUnderTest) -> None:
    store, k = idempotency.store, key()
    await store.claim("o1", k, fingerprint="f1", claim_id="c1", now=NOW, until=HOLD)
    assert await store.complete("o1", k, claim_id="c1", answer=ANSWER, until=DAY) is True
    later = NOW + timedelta(hours=23)
    found = await idempotency.other.claim("o1", k, fingerprint="f1", claim_id="c2", now=later, until=later)
    assert found is not None and found.answer == ANSWER and found.claim_id == "c1"
    # a day later it is gone: the key may be used again
    after = DAY + timedelta(seconds=1)
    assert await store.claim("o1", k, fingerprint="f3", claim_id="c3", now=after, until=after) is None


async def test_an_expired_claim_can_be_taken_over(idempotency: IdempotencyUnderTest) -> None:
    store, k = idempotency.store, key()
    await store.claim("o1", k, fingerprint="f1", claim_id="c1", now=NOW, until=HOLD)
    late = HOLD + timedelta(seconds=1)
    again = late + timedelta(seconds=60)
    assert await store.claim("o1", k, fingerprint="f1", claim_id="c2", now=late, until=again) is None
    # the first claim's owner can no longer complete or release it
    assert await store.complete("o1", k, claim_id="c1", answer=ANSWER, until=DAY) is False
    await store.release("o1", k, claim_id="c1")
    found = await store.claim("o1", k, fingerprint="f1", claim_id="c3", now=late, until=late)
    assert found is not None and found.claim_id == "c2"


async def test_release_lets_a_retry_claim_again_but_never_drops_an_answer(idempotency: IdempotencyUnderTest) -> None:
    store, k = idempotency.store, key()
    await store.claim("o1", k, fingerprint="f1", claim_id="c1", now=NOW, until=HOLD)
    await store.release("o1", k, claim_id="other")  # not the owner: nothing happens
    assert await store.claim("o1", k, fingerprint="f1", claim_id="c2", now=NOW, until=HOLD) is not None
    await store.release("o1", k, claim_id="c1")
    assert await store.claim("o1", k, fingerprint="f1", claim_id="c2", now=NOW, until=HOLD) is None
    assert await store.complete("o1", k, claim_id="c2", answer=ANSWER, until=DAY) is True
    await store.release("o1", k, claim_id="c2")  # answered: kept
    found = await store.claim("o1", k, fingerprint="f1", claim_id="c3", now=NOW, until=HOLD)
    assert found is not None and found.answer == ANSWER


async def test_concurrent_claims_from_two_handles_have_one_winner(idempotency: IdempotencyUnderTest) -> None:
    k = key()
    handles = [idempotency.store, idempotency.other] * 5
    got = await asyncio.gather(
        *(h.claim("o1", k, fingerprint="f", claim_id=f"c{i}", now=NOW, until=HOLD) for i, h in enumerate(handles))
    )
    winners = [i for i, g in enumerate(got) if g is None]
    assert len(winners) == 1
    assert {g.claim_id for g in got if g is not None} == {f"c{winners[0]}"}


async def test_answers_keep_their_bytes(idempotency: IdempotencyUnderTest) -> None:
    store, k = idempotency.store, key()
    answer = StoredAnswer(201, '{"name": "Jïra ✓"}'.encode() + bytes([0, 255]))
    await store.claim("o1", k, fingerprint="f", claim_id="c", now=NOW, until=HOLD)
    await store.complete("o1", k, claim_id="c", answer=answer, until=DAY)
    found = await idempotency.other.claim("o1", k, fingerprint="f", claim_id="d", now=NOW, until=HOLD)
    assert found is not None and found.answer == answer


async def test_purge_drops_only_expired_records(idempotency: IdempotencyUnderTest) -> None:
    store = idempotency.store
    gone, kept = key(), key()
    await store.claim("o1", gone, fingerprint="f", claim_id="c1", now=NOW, until=HOLD)
    await store.claim("o1", kept, fingerprint="f", claim_id="c2", now=NOW, until=DAY)
    assert await store.purge_expired(HOLD + timedelta(seconds=1)) >= 1
    assert await store.claim("o1", kept, fingerprint="f", claim_id="c3", now=NOW, until=HOLD) is not None
    assert await store.claim("o1", gone, fingerprint="f", claim_id="c4", now=NOW, until=HOLD) is None
