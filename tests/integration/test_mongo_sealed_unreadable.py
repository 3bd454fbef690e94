"""Key rotation on MongoDB with a sealed field that is not a string (written by hand, or by
another program): the census calls it unreadable, not old-format (so it never makes a rotation
look unfinished), and re-encryption names it as damaged and leaves it as it was."""

from __future__ import annotations

import pytest

from adapters.mongo import MongoUnitOfWork
from adapters.mongo.sealed_values import MongoSealedValues
from adapters.system import ManualClock
from tests.builders import token_record
from tests.integration.test_mongo_faults import database

pytestmark = pytest.mark.mongo


async def test_a_sealed_field_that_is_no_string_is_unreadable_and_named_as_damaged(
    mongo_url: str, clock: ManualClock
) -> None:
    async with database(mongo_url, clock) as db:
        async with MongoUnitOfWork(db) as uow:
            await uow.tokens.add(token_record("o1", clock.now(), key="jira", token_id="t1"))
            await uow.tokens.add(token_record("o1", clock.now(), key="confluence", token_id="t2"))
            await uow.commit()
        await db.tokens.update_one({"_id": "t1"}, {"$set": {"material": 12345}})
        sealed = MongoSealedValues(db)
        census = await sealed.census()
        assert census["tokens"] == {"unreadable": 1, "k1": 1}

        told: list[str] = []
        assert await sealed.reseal(damaged=told.append) == 0  # t2 is under the primary already
        assert told == ["/tokens/t1"]
        assert (await db.tokens.find_one({"_id": "t1"}) or {}).get("material") == 12345  # left as it was
