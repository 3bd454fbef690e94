"""On MongoDB the token census (every record, read for the metrics off the request path) has a
time limit of its own: the one meant for a request's calls (``mongo_timeout_seconds``, 2 s by
default) failed it at scale, and the token series went missing from every scrape."""

from __future__ import annotations

import pytest

from adapters.mongo import MongoUnitOfWork
from adapters.system import ManualClock
from tests.builders import token_record
from tests.integration.test_mongo_faults import database

pytestmark = pytest.mark.mongo


async def test_the_census_is_not_cut_by_the_time_limit_of_a_request_call(mongo_url: str, clock: ManualClock) -> None:
    async with database(mongo_url, clock) as db:
        async with MongoUnitOfWork(db) as uow:
            await uow.tokens.add(token_record("o1", clock.now(), key="jira", token_id="t1"))
            await uow.commit()
        db.timeout_seconds = 1e-6  # no call of a request could finish in it
        async with MongoUnitOfWork(db) as uow:
            census = await uow.tokens.census(clock.now())
        assert sum(census.states.values()) == 1
