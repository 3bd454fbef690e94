"""Contract: TokenStore's due-token query counts only records that are due."""

from __future__ import annotations

import uuid
from datetime import timedelta

from connector_core.errors import RetryableProviderError
from connector_core.tokens import RefreshPolicy, TokenLifecycle
from tests.builders import token_record
from tests.conftest import SeededRandom
from tests.contract.conftest import Harness


async def test_resting_records_do_not_crowd_out_the_due_ones_behind_them(harness: Harness) -> None:
    """``limit`` counts records that are due: those resting after a failure, earlier in the
    due order and more of them than the limit, are passed over, neither returned nor counted."""
    now = harness.clock.now()
    policy = RefreshPolicy(margin=timedelta(minutes=10), jitter=timedelta(0))
    lifecycle = TokenLifecycle(policy, SeededRandom())
    run = uuid.uuid4().hex[:6]
    resting = [
        token_record(f"o-{run}-r{i}", now, expires_in=60, token_id=f"rest{i}-{run}", policy=policy) for i in range(5)
    ]
    ready = [
        token_record(f"o-{run}-d{i}", now, expires_in=120 + 2 * i, token_id=f"ready{i}-{run}", policy=policy)
        for i in range(3)
    ]
    for r in resting:
        # due at +30 s; failed at +100 s, so resting until +110 s at least
        r.apply_retryable_failure(
            RetryableProviderError("down", status=503), lifecycle=lifecycle, now=now + timedelta(seconds=100)
        )
    async with harness.uow() as uow:
        for r in [*resting, *ready]:
            await uow.tokens.add(r)
        await uow.commit()
    async with harness.uow() as uow:
        found = await uow.tokens.due_before(now + timedelta(seconds=65), 2)  # ready ones due at +60 s..
    assert [r.id for r in found] == [f"ready0-{run}", f"ready1-{run}"]
