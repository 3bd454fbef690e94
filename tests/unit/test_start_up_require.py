"""Start-up waits for a dependency that is away for a moment (a failover), within its budget."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from pymongo.errors import OperationFailure

from adapters.crypto import Aead, Keyring
from adapters.health import Refused, require
from adapters.mongo import MongoDatabase, make_client
from adapters.system import ManualClock
from connector_core.errors import Unavailable

WHAT = "Redis at redis://***@cache:6379/0"
BUDGET = 0.5


class Probe:
    """Answers from a script, one outcome per call (an exception is raised), then True; records
    how many times it was called."""

    def __init__(self, *outcomes: bool | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        if not self.outcomes:
            return True
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


async def test_a_dependency_that_answers_after_two_failures_is_waited_for(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters.health")
    probe = Probe(ConnectionRefusedError("redis://:PLANTED-PW@cache"), False)
    await require(probe, WHAT, within=BUDGET)
    assert probe.calls == 3
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said  # once per dependency, not once per attempt
    assert WHAT in said[0] and "ConnectionRefusedError" in said[0]
    assert "PLANTED" not in said[0]  # the class of the failure, never its text


async def test_a_dependency_that_never_answers_fails_with_the_last_reason_within_the_budget() -> None:
    attempts = [Unavailable(f"attempt {n}") for n in range(1, 100)]
    probe = Probe(*attempts)
    started = time.monotonic()
    with pytest.raises(Unavailable) as failed:
        await require(probe, WHAT, within=BUDGET)
    elapsed = time.monotonic() - started
    assert probe.calls > 2  # tried again, with pauses: 0.1 s, 0.2 s, ...
    assert failed.value.message == f"cannot reach {WHAT}: attempt {probe.calls}"
    assert elapsed < BUDGET + 0.2


async def test_a_driver_error_is_named_by_its_class_and_a_false_answer_by_nothing() -> None:
    with pytest.raises(Unavailable) as by_class:
        await require(Probe(*[OSError("redis://:PLANTED-PW@cache")] * 100), WHAT, within=0.2)
    assert by_class.value.message == f"cannot reach {WHAT}: OSError"
    with pytest.raises(Unavailable) as unhealthy:
        await require(Probe(OSError("first"), *[False] * 100), WHAT, within=0.2)
    assert unhealthy.value.message == f"cannot reach {WHAT}"  # the last failure is the one named


async def test_a_probe_that_hangs_on_a_retry_is_cut_at_the_deadline() -> None:
    calls = 0

    async def fails_then_hangs() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Unavailable("failing over")
        await asyncio.Event().wait()
        return True

    started = time.monotonic()
    with pytest.raises(Unavailable) as failed:
        await require(fails_then_hangs, WHAT, within=BUDGET)
    elapsed = time.monotonic() - started
    assert calls == 2
    assert failed.value.message == f"cannot reach {WHAT}: TimeoutError"
    assert BUDGET - 0.05 < elapsed < BUDGET + 0.2


async def test_a_probe_that_turns_the_cut_into_an_error_of_its_own_still_ends_the_wait() -> None:
    async def swallows_the_cut() -> bool:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise Unavailable("interrupted") from None
        return True

    with pytest.raises(Unavailable) as failed:
        await asyncio.wait_for(require(swallows_the_cut, WHAT, within=0.2), timeout=5)
    assert failed.value.message == f"cannot reach {WHAT}: interrupted"


async def test_a_dependency_that_refuses_this_service_stops_the_wait_at_once() -> None:
    probe = Probe(False, Refused("authentication failed: check the password in the Redis URL"))
    started = time.monotonic()
    with pytest.raises(Unavailable) as stopped:
        await require(probe, WHAT, within=10.0)
    assert time.monotonic() - started < 1.0 and probe.calls == 2  # not 10 s of tries
    assert (
        str(stopped.value) == f"{WHAT} refused this service: authentication failed: check the password in the Redis URL"
    )


class _RefusingDatabase:
    async def command(self, name: str) -> None:
        raise OperationFailure("Authentication failed. PLANTED-SERVER-TEXT", code=18)


async def test_a_mongodb_server_that_refuses_the_credentials_stops_start_up_at_once() -> None:
    db = MongoDatabase(
        make_client("mongodb://u:PLANTED-PW@127.0.0.1:1/", timeout_seconds=1.0),
        "cm",
        sealer=Aead(Keyring.generate()),
        clock=ManualClock(),
    )
    try:
        db.db = _RefusingDatabase()  # type: ignore[assignment]
        assert await db.check() is False  # the health probe still never raises
        started = time.monotonic()
        with pytest.raises(Unavailable) as refused:
            await require(db.start_probe, "MongoDB at mongodb://u:***@127.0.0.1:1/", within=10.0)
        assert time.monotonic() - started < 1.0
        assert "refused this service: authentication failed" in str(refused.value)
        assert "PLANTED" not in str(refused.value)
    finally:
        await db.aclose()
