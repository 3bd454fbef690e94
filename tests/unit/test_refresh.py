"""TokenRefresher: due refreshes under leases, retries, cooldowns, re-authorization, expiry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest
from attrs import define, field

from adapters.lease_wait import POLL_SECONDS
from adapters.memory import MemoryKeyValueStore, MemoryLeaseLock, MemoryOAuthStateStore
from adapters.memory.storage import MemoryOutboxReader, MemoryStorage, MemoryUnitOfWork
from adapters.system import ManualClock
from connector_core.catalog import Catalog, OAuthSpec
from connector_core.deadline import deadline
from connector_core.errors import (
    Conflict,
    NotFound,
    ProviderError,
    ReauthorizationRequired,
    RetryableProviderError,
    Unavailable,
)
from connector_core.model.connector import AuthState, Connector, ConnectorConfig
from connector_core.model.events import TokenEvent
from connector_core.ports.lock import Lease
from connector_core.ports.oauth_provider import ClientCredentials
from connector_core.ports.oauth_state import PendingAuthorization
from connector_core.ports.unit_of_work import UnitOfWork
from connector_core.services.context import ServiceContext
from connector_core.services.providers import ResolvedProvider
from connector_core.services.refresh import RefreshOutcome, RefreshReport, TokenRefresher
from connector_core.tokens import RefreshPolicy, TokenRecord, TokenSet, TokenStatus
from tests.conftest import CountingIds, SeededRandom

KEY = "googleWorkspace"
SPEC = OAuthSpec("https://idp.test/auth", "https://idp.test/token")
CLIENT = ClientCredentials("cid", "PLANTED-CLIENT-SECRET")

Answer = Mapping[str, Any] | Exception


@define
class RefreshingProvider:
    """Answers refresh grants from a queue (default: a new access token, no rotation)."""

    answers: list[Answer] = field(factory=list)
    calls: list[str] = field(factory=list)
    before_answer: Callable[[str], Awaitable[None]] | None = None
    revoked: list[tuple[str, str]] = field(factory=list)
    n: int = 0

    async def refresh(
        self,
        spec: OAuthSpec,
        client: ClientCredentials,
        *,
        refresh_token: str,
        scopes: Sequence[str] = (),
    ) -> Mapping[str, Any]:
        self.calls.append(refresh_token)
        if self.before_answer is not None:
            await self.before_answer(refresh_token)
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, Exception):
            raise answer
        self.n += 1
        return answer or {"access_token": f"PLANTED-AT-new-{self.n}", "expires_in": 3600}

    async def exchange_code(self, *a: Any, **k: Any) -> Mapping[str, Any]:
        raise AssertionError("not used")

    async def revoke(self, spec: OAuthSpec, client: ClientCredentials, *, token: str, token_type_hint: str) -> None:
        self.revoked.append((token, token_type_hint))

    async def verify_id_token(self, *a: Any, **k: Any) -> Mapping[str, Any]:
        raise AssertionError("not used")

    async def discover(self, issuer: str) -> Mapping[str, Any]:
        raise AssertionError("not used")


class SleepRecorder:
    """The refresher's sleep: records the delays and runs ``hook`` (with the count so far)."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.hook: Callable[[int], Awaitable[None]] | None = None

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.hook is not None:
            await self.hook(len(self.delays))
        await asyncio.sleep(0)


@define
class Env:
    ctx: ServiceContext
    storage: MemoryStorage
    clock: ManualClock
    provider: RefreshingProvider
    lock: MemoryLeaseLock
    sleeps: SleepRecorder
    refresher: TokenRefresher
    outbox: MemoryOutboxReader
    resolved: list[tuple[str, str]] = field(factory=list)

    async def seed(
        self,
        org: str = "org-1",
        *,
        expires_in: float = 3600,
        refresh: str | None = "PLANTED-RT-1",
        access: str = "PLANTED-AT-1",
    ) -> TokenRecord:
        now = self.clock.now()
        entry = self.ctx.catalog.get(KEY)
        connector = Connector.create(entry, org_id=org, connector_id=self.ctx.ids.new_id(), now=now, by="u1")
        connector.update_configuration(
            entry,
            ConnectorConfig(auth={"clientId": "cid"}, base_url="http://localhost", secrets_set={"auth.clientSecret"}),
            by="u1",
            now=now,
            ids=self.ctx.ids,
            changed_secrets=["auth.clientSecret"],
        )
        connector.record_authorization(entry, ("DRIVE",), by="u1", now=now, ids=self.ctx.ids)
        connector.pull_events()
        record = TokenRecord.create(
            token_id=self.ctx.ids.new_id(),
            org_id=org,
            connector_key=KEY,
            account_id="u1",
            service_type="GOOGLE_DRIVE",
            tokens=TokenSet(
                access_token=access,
                obtained_at=now,
                refresh_token=refresh,
                expires_at=now + timedelta(seconds=expires_in),
            ),
            lifecycle=self.ctx.lifecycle,
            now=now,
            ids=self.ctx.ids,
        )
        record.pull_events()
        async with self.ctx.uow() as uow:
            await uow.connectors.add(connector)
            await uow.tokens.add(record)
            await uow.commit()
        return record

    async def token(self, org: str = "org-1") -> TokenRecord:
        async with self.ctx.uow() as uow:
            found = await uow.tokens.get_for_connector(org, KEY)
        assert found is not None
        return found

    async def connector(self, org: str = "org-1") -> Connector:
        async with self.ctx.uow() as uow:
            found = await uow.connectors.get(org, KEY)
        assert found is not None
        return found

    async def token_events(self) -> list[str]:
        return [m.event.event_type for m in await self.outbox.recent(10_000) if isinstance(m.event, TokenEvent)]

    async def changed_elsewhere(
        self, token_id: str, change: Callable[[TokenRecord], object], *, delete: bool = False
    ) -> None:
        """Someone else changes the stored token (and commits) behind this refresher's back."""
        async with self.ctx.uow() as uow:
            other = await uow.tokens.get(token_id)
            assert other is not None
            change(other)
            await uow.outbox.add(other.pull_events())
            await (uow.tokens.delete(other) if delete else uow.tokens.save(other))
            await uow.commit()

    async def refreshed_elsewhere(self, token_id: str, access: str = "AT-other", rotated: str | None = None) -> None:
        """Another worker refreshes the token (and commits) behind this refresher's back."""
        answer = {"access_token": access} | ({"refresh_token": rotated} if rotated else {})
        now = self.clock.now()
        await self.changed_elsewhere(
            token_id,
            lambda other: other.apply_refresh(
                other.tokens.refreshed(answer, now=now), lifecycle=self.ctx.lifecycle, now=now, ids=self.ctx.ids
            ),
        )

    def make_due(self) -> None:
        self.clock.advance(3600 - 600 + 1)  # past margin + jitter of a 1 h token


def make_env(catalog: Catalog, t0: Any, **refresher_kw: Any) -> Env:
    storage = MemoryStorage()
    clock = ManualClock(t0)
    ctx = ServiceContext(
        catalog=catalog,
        uow=storage.unit_of_work,
        secrets=MemoryKeyValueStore(),
        clock=clock,
        ids=CountingIds(),
        random=SeededRandom(),
        policy=RefreshPolicy(),
    )
    provider = RefreshingProvider()
    sleeps = SleepRecorder()
    lock = MemoryLeaseLock(clock, sleep=sleeps)
    resolved: list[tuple[str, str]] = []

    async def credentials(org: str, key: str) -> ResolvedProvider:
        resolved.append((org, key))
        return ResolvedProvider(SPEC, CLIENT)

    refresher = TokenRefresher(
        ctx,
        provider,
        lock,
        oauth=credentials,
        sleep=sleeps,
        states=MemoryOAuthStateStore(storage),
        **refresher_kw,
    )
    return Env(ctx, storage, clock, provider, lock, sleeps, refresher, MemoryOutboxReader(storage), resolved)


@pytest.fixture
def env(catalog: Catalog, t0: Any) -> Env:
    return make_env(catalog, t0)


class FlakyTokenCommits(MemoryUnitOfWork):
    """A unit of work whose commit fails while ``box["left"]`` says so, when it carries a token."""

    def __init__(self, storage: MemoryStorage, box: dict[str, int]) -> None:
        super().__init__(storage)
        self.box = box

    async def commit(self) -> None:
        if self._staged_tokens:
            self.box["attempts"] += 1
            if self.box["left"]:
                self.box["left"] -= 1
                raise Unavailable("storage is down")
        await super().commit()


def failing_commits(env: Env, failures: int) -> dict[str, int]:
    """The token store is down for the next ``failures`` commits that carry a token."""
    box = {"left": failures, "attempts": 0}

    def flaky() -> UnitOfWork:
        return FlakyTokenCommits(env.storage, box)

    env.ctx.uow = flaky
    return box


# -- the happy path ------------------------------------------------------------------------------


async def test_due_token_is_refreshed_and_announced(env: Env) -> None:
    seeded = await env.seed()
    env.make_due()
    report = await env.refresher.refresh_due()
    assert report == RefreshReport(refreshed=1)
    assert env.provider.calls == ["PLANTED-RT-1"]
    record = await env.token()
    assert record.tokens.access_token == "PLANTED-AT-new-1"
    assert record.tokens.refresh_token == "PLANTED-RT-1"  # kept: none came back
    assert record.tokens.obtained_at == env.clock.now()
    assert record.refresh_due_at is not None and record.refresh_due_at > env.clock.now()
    assert record.version == seeded.version + 1
    assert await env.token_events() == ["TOKEN_REFRESHED"]
    assert env.sleeps.delays == []
    assert await env.lock.acquire(f"token-refresh:{record.id}", 1) is not None  # released


async def test_token_not_due_is_left_alone(env: Env) -> None:
    await env.seed()
    env.clock.advance(60)
    assert await env.refresher.refresh_due() == RefreshReport()
    assert env.provider.calls == []


async def test_rotated_refresh_token_is_stored(env: Env) -> None:
    await env.seed()
    env.make_due()
    env.provider.answers = [{"access_token": "PLANTED-AT-2", "refresh_token": "PLANTED-RT-2", "expires_in": 600}]
    await env.refresher.refresh_due()
    record = await env.token()
    assert record.tokens.refresh_token == "PLANTED-RT-2"
    assert record.tokens.expires_at == env.clock.now() + timedelta(seconds=600)


async def test_token_without_refresh_token_is_never_due(env: Env) -> None:
    await env.seed(refresh=None)
    env.clock.advance(7200)
    assert (await env.refresher.refresh_due()).total == 0


# -- retryable failures --------------------------------------------------------------------------


async def test_retryable_failures_are_retried_with_backoff(env: Env) -> None:
    await env.seed()
    env.make_due()
    env.provider.answers = [
        RetryableProviderError("provider unavailable: HTTP 503", status=503),
        RetryableProviderError("provider unavailable: network error"),
    ]
    assert (await env.refresher.refresh_due()).refreshed == 1
    assert len(env.provider.calls) == 3
    assert len(env.sleeps.delays) == 2
    policy = env.ctx.policy
    assert policy.retry_base_seconds <= env.sleeps.delays[0] < 2 * policy.retry_base_seconds
    assert 2 * policy.retry_base_seconds <= env.sleeps.delays[1] < 4 * policy.retry_base_seconds


async def test_retry_after_is_honoured(env: Env) -> None:
    await env.seed()
    env.make_due()
    env.provider.answers = [RetryableProviderError("rate limited", status=429, retry_after=7)]
    assert (await env.refresher.refresh_due()).refreshed == 1
    assert env.sleeps.delays and env.sleeps.delays[0] >= 7


async def test_long_retry_after_rests_the_token_instead_of_holding_the_lease(env: Env) -> None:
    await env.seed()
    env.make_due()
    env.provider.answers = [RetryableProviderError("rate limited", status=429, retry_after=600)]
    assert await env.refresher.refresh_due() == RefreshReport(failed=1)
    assert env.sleeps.delays == []
    record = await env.token()
    assert record.next_attempt_at is not None
    assert record.next_attempt_at >= env.clock.now() + timedelta(seconds=600)


async def test_exhausted_retries_rest_the_token_then_try_again(env: Env) -> None:
    await env.seed()
    env.make_due()
    env.provider.answers = [RetryableProviderError("down", status=503) for _ in range(3)]
    assert await env.refresher.refresh_due() == RefreshReport(failed=1)
    record = await env.token()
    assert record.status == TokenStatus.ACTIVE
    assert record.failure_count == 1 and record.last_error == "down"
    assert record.next_attempt_at is not None and record.next_attempt_at > env.clock.now()
    assert await env.token_events() == []
    calls = len(env.provider.calls)
    # Resting: the next run does not touch it...
    assert (await env.refresher.refresh_due()).total == 0
    assert len(env.provider.calls) == calls
    # ...until the cooldown has passed.
    env.clock.advance((record.next_attempt_at - env.clock.now()).total_seconds() + 1)
    assert (await env.refresher.refresh_due()).refreshed == 1
    record = await env.token()
    assert record.failure_count == 0 and record.next_attempt_at is None


async def test_plain_provider_error_rests_without_in_run_retries(env: Env) -> None:
    await env.seed()
    env.make_due()
    env.provider.answers = [ProviderError("provider error: invalid_scope", status=400)]
    assert await env.refresher.refresh_due() == RefreshReport(failed=1)
    assert len(env.provider.calls) == 1
    assert (await env.token()).next_attempt_at is not None


async def test_missing_client_configuration_rests_the_token(catalog: Catalog, t0: Any) -> None:
    env = make_env(catalog, t0)

    async def broken(org: str, key: str) -> ResolvedProvider:
        from connector_core.errors import NotConfigured

        raise NotConfigured("Google Workspace cannot be authorized: missing auth.clientSecret")

    env.refresher._resolve = broken
    await env.seed()
    env.make_due()
    assert await env.refresher.refresh_due() == RefreshReport(failed=1)
    assert env.provider.calls == []
    last_error = (await env.token()).last_error
    assert last_error is not None and "clientSecret" in last_error


# -- re-authorization ----------------------------------------------------------------------------


async def test_invalid_grant_needs_reauthorization_once_and_is_not_retried(env: Env) -> None:
    await env.seed()
    env.make_due()
    env.provider.answers = [ReauthorizationRequired("refused", error_code="invalid_grant")]
    assert await env.refresher.refresh_due() == RefreshReport(reauth_required=1)
    record = await env.token()
    assert record.status == TokenStatus.NEEDS_REAUTHENTICATION
    connector = await env.connector()
    assert connector.auth_status.state == AuthState.NEEDS_REAUTHENTICATION
    assert "invalid_grant" in (connector.auth_status.reason or "")
    assert await env.token_events() == ["TOKEN_EXPIRED"]
    kinds = [m.event.event_type for m in await env.outbox.recent(100)]
    assert kinds.count("connectorAuthStatusChanged") == 1
    # Later runs and sweeps: no provider call, no second event.
    for _ in range(3):
        env.clock.advance(3600)
        assert (await env.refresher.refresh_due()).total == 0
        assert await env.refresher.sweep_expired() == 0
    assert env.provider.calls == ["PLANTED-RT-1"]
    assert await env.token_events() == ["TOKEN_EXPIRED"]
    with pytest.raises(ReauthorizationRequired):
        await env.refresher.refresh_connector("org-1", KEY)


async def test_revoked_grant_is_announced_as_revoked(env: Env) -> None:
    await env.seed()
    env.make_due()
    env.provider.answers = [ReauthorizationRequired("refused", error_code="token_revoked")]
    await env.refresher.refresh_due()
    assert await env.token_events() == ["TOKEN_REVOKED"]


async def test_invalid_grant_after_a_concurrent_rotation_is_not_a_failure(env: Env) -> None:
    seeded = await env.seed()
    env.make_due()

    async def someone_rotates(used: str) -> None:
        await env.refreshed_elsewhere(seeded.id, "PLANTED-AT-x", rotated="PLANTED-RT-x")

    env.provider.before_answer = someone_rotates
    env.provider.answers = [ReauthorizationRequired("refused", error_code="invalid_grant")]
    assert await env.refresher.refresh_due() == RefreshReport(skipped=1)
    record = await env.token()
    assert record.status == TokenStatus.ACTIVE
    assert record.tokens.refresh_token == "PLANTED-RT-x"
    assert (await env.connector()).auth_status.state == AuthState.AUTHENTICATED


# -- concurrency ---------------------------------------------------------------------------------


async def test_a_held_lease_skips_the_token(env: Env) -> None:
    seeded = await env.seed()
    env.make_due()
    held = await env.lock.acquire(f"token-refresh:{seeded.id}", 60)
    assert held is not None
    assert await env.refresher.refresh_due() == RefreshReport(skipped=1)
    assert env.provider.calls == []


async def test_record_is_read_again_after_taking_the_lease(
    catalog: Catalog, t0: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env(catalog, t0)
    seeded = await env.seed()
    env.make_due()
    real_acquire = env.lock.acquire

    async def acquire_after_another_worker(name: str, ttl_seconds: float, *, wait: float = 0.0) -> Lease | None:
        # Between the due query and this lease another worker refreshed the token.
        await env.refreshed_elsewhere(seeded.id)
        return await real_acquire(name, ttl_seconds, wait=wait)

    monkeypatch.setattr(env.lock, "acquire", acquire_after_another_worker)
    assert await env.refresher.refresh_due() == RefreshReport(skipped=1)
    assert env.provider.calls == []


async def test_concurrent_expiry_notice_does_not_lose_the_rotated_token(env: Env) -> None:
    seeded = await env.seed()
    env.clock.advance(3601)  # due and expired

    async def sweep_meanwhile(used: str) -> None:
        assert await env.refresher.sweep_expired() == 1

    env.provider.before_answer = sweep_meanwhile
    env.provider.answers = [{"access_token": "PLANTED-AT-2", "refresh_token": "PLANTED-RT-2"}]
    assert (await env.refresher.refresh_due()).refreshed == 1
    record = await env.token()
    assert record.tokens.refresh_token == "PLANTED-RT-2"
    assert record.version == seeded.version + 2
    assert await env.token_events() == ["TOKEN_EXPIRED", "TOKEN_REFRESHED"]


async def test_refresh_result_is_dropped_when_reauthorized_meanwhile(env: Env) -> None:
    seeded = await env.seed()
    env.make_due()

    async def reauthorized_meanwhile(used: str) -> None:
        tokens = TokenSet(access_token="AT-new-grant", obtained_at=env.clock.now(), refresh_token="RT-new-grant")
        await env.changed_elsewhere(
            seeded.id,
            lambda other: other.replace_tokens(
                tokens, lifecycle=env.ctx.lifecycle, now=env.clock.now(), ids=env.ctx.ids
            ),
        )

    env.provider.before_answer = reauthorized_meanwhile
    assert await env.refresher.refresh_due() == RefreshReport(skipped=1)
    assert (await env.token()).tokens.refresh_token == "RT-new-grant"


async def test_concurrency_is_bounded(env: Env) -> None:
    for i in range(10):
        await env.seed(f"org-{i}")
    env.make_due()
    running = {"now": 0, "max": 0}

    async def slow(used: str) -> None:
        running["now"] += 1
        running["max"] = max(running["max"], running["now"])
        await asyncio.sleep(0.01)
        running["now"] -= 1

    env.provider.before_answer = slow
    report = await env.refresher.refresh_due(batch_size=100, concurrency=3)
    assert report.refreshed == 10
    assert running["max"] == 3


def answer_when_told(env: Env) -> tuple[asyncio.Event, asyncio.Event]:
    """The provider's next refresh answer (a rotated token, PLANTED-RT-2) comes only once the
    second event is set; the first is set when the call arrives."""
    started, answer = asyncio.Event(), asyncio.Event()

    async def slow_answer(used: str) -> None:
        started.set()
        await answer.wait()

    env.provider.before_answer = slow_answer
    env.provider.answers = [{"access_token": "PLANTED-AT-2", "refresh_token": "PLANTED-RT-2", "expires_in": 600}]
    return started, answer


async def test_a_batch_cancelled_during_a_call_stores_the_rotated_token_it_answers(env: Env) -> None:
    """A worker shut down while the provider is answering: the provider has rotated the refresh
    token by then whatever the worker does, so the answer is stored before the batch stops."""
    await env.seed()
    env.make_due()
    started, answer = answer_when_told(env)
    batch = asyncio.create_task(env.refresher.refresh_due())
    await started.wait()
    batch.cancel()
    await asyncio.sleep(0.01)
    assert not batch.done()  # waiting for the answer, not gone
    answer.set()
    with pytest.raises(asyncio.CancelledError):
        await batch
    record = await env.token()
    assert record.tokens.refresh_token == "PLANTED-RT-2"
    assert record.tokens.access_token == "PLANTED-AT-2"
    assert await env.token_events() == ["TOKEN_REFRESHED"]
    assert await env.lock.acquire(f"token-refresh:{record.id}", 1) is not None  # released


async def test_a_cancelled_batch_waits_for_every_call_in_flight_even_cancelled_twice(env: Env) -> None:
    """Several tokens, one call in flight, the others waiting for their turn: cancelled (twice,
    as an event loop shutting down does), the batch still ends only once the call in flight
    answered and its rotated token is stored; the waiting ones start no call."""
    for i in range(3):
        await env.seed(f"org-{i}")
    env.make_due()
    started, answer = answer_when_told(env)
    batch = asyncio.create_task(env.refresher.refresh_due(concurrency=1))
    await started.wait()
    batch.cancel()
    await asyncio.sleep(0.01)
    batch.cancel()
    await asyncio.sleep(0.01)
    assert not batch.done()  # waiting for the answer of the call in flight
    answer.set()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert len(env.provider.calls) == 1
    stored = [str((await env.token(f"org-{i}")).tokens.refresh_token) for i in range(3)]
    assert sorted(stored) == ["PLANTED-RT-1", "PLANTED-RT-1", "PLANTED-RT-2"]


class HeldCommits(MemoryUnitOfWork):
    """A unit of work whose commit of a token waits for ``gate`` (a slow store)."""

    def __init__(self, storage: MemoryStorage, entered: asyncio.Event, gate: asyncio.Event) -> None:
        super().__init__(storage)
        self.entered, self.gate = entered, gate

    async def commit(self) -> None:
        if self._staged_tokens:
            self.entered.set()
            await self.gate.wait()
        await super().commit()


async def test_a_batch_cancelled_while_storing_a_rotated_token_finishes_storing_it(env: Env) -> None:
    await env.seed()
    env.make_due()
    entered, gate = asyncio.Event(), asyncio.Event()
    env.ctx.uow = lambda: HeldCommits(env.storage, entered, gate)
    env.provider.answers = [{"access_token": "PLANTED-AT-2", "refresh_token": "PLANTED-RT-2", "expires_in": 600}]
    batch = asyncio.create_task(env.refresher.refresh_due())
    await entered.wait()
    batch.cancel()
    await asyncio.sleep(0.01)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert (await env.token()).tokens.refresh_token == "PLANTED-RT-2"


async def test_a_stop_during_a_batch_starts_no_further_provider_call(env: Env) -> None:
    for i in range(4):
        await env.seed(f"org-{i}")
    env.make_due()
    stop = asyncio.Event()

    async def stop_at_first_call(used: str) -> None:
        stop.set()  # the worker is told to shut down while the first call is in flight
        await asyncio.sleep(0.01)

    env.provider.before_answer = stop_at_first_call
    report = await env.refresher.refresh_due(concurrency=1, stop=stop)
    assert report == RefreshReport(refreshed=1, skipped=3)
    assert len(env.provider.calls) == 1
    for i in range(4):  # every lease free again
        record = await env.token(f"org-{i}")
        assert await env.lock.acquire(f"token-refresh:{record.id}", 1) is not None
    # a round once stopped starts no call either (the three are still due)
    assert (await env.refresher.run_once(concurrency=1, stop=stop)) == RefreshReport(skipped=3)
    assert len(env.provider.calls) == 1


async def test_batch_size_limits_one_run(env: Env) -> None:
    for i in range(5):
        await env.seed(f"org-{i}")
    env.make_due()
    assert (await env.refresher.refresh_due(batch_size=2)).refreshed == 2
    assert (await env.refresher.refresh_due(batch_size=10)).refreshed == 3


async def test_storage_outage_on_commit_is_retried(catalog: Catalog, t0: Any) -> None:
    env = make_env(catalog, t0)
    await env.seed()
    env.make_due()
    failing_commits(env, 1)
    assert (await env.refresher.refresh_due()).refreshed == 1
    assert (await env.token()).tokens.access_token == "PLANTED-AT-new-1"
    assert len(env.sleeps.delays) == 1


# -- on demand -----------------------------------------------------------------------------------


async def test_refresh_connector_forces_a_refresh(env: Env) -> None:
    await env.seed()
    record = await env.refresher.refresh_connector("org-1", "google")
    assert record.tokens.access_token == "PLANTED-AT-new-1"
    assert (await env.token()).tokens.access_token == "PLANTED-AT-new-1"
    assert env.resolved == [("org-1", KEY)]


async def test_refresh_connector_without_force_only_when_due(env: Env) -> None:
    await env.seed()
    record = await env.refresher.refresh_connector("org-1", KEY, force=False)
    assert record.tokens.access_token == "PLANTED-AT-1"
    assert env.provider.calls == []


async def test_refresh_connector_errors(env: Env) -> None:
    with pytest.raises(NotFound):
        await env.refresher.refresh_connector("org-1", KEY)
    await env.seed()
    env.provider.answers = [RetryableProviderError("down", status=503) for _ in range(3)]
    with pytest.raises(RetryableProviderError):
        await env.refresher.refresh_connector("org-1", KEY)
    assert (await env.token()).failure_count == 1
    env.clock.advance(120)  # past the token's rest after that failure
    env.provider.answers = [ReauthorizationRequired("refused", error_code="invalid_grant")]
    with pytest.raises(ReauthorizationRequired):
        await env.refresher.refresh_connector("org-1", KEY)


async def test_refresh_connector_waits_for_a_running_refresh_and_reuses_it(catalog: Catalog, t0: Any) -> None:
    env = make_env(catalog, t0, lease_wait=1.0)
    seeded = await env.seed()
    held = await env.lock.acquire(f"token-refresh:{seeded.id}", 60)
    assert held is not None

    async def other_worker_finishes(waits: int) -> None:
        if waits == 3:
            env.clock.advance(1)
            await env.refreshed_elsewhere(seeded.id)
            await env.lock.release(held)

    env.sleeps.hook = other_worker_finishes
    record = await env.refresher.refresh_connector("org-1", KEY)
    assert record.tokens.access_token == "AT-other"
    assert env.provider.calls == []


async def test_refresh_connector_gives_up_on_a_stuck_lease(catalog: Catalog, t0: Any) -> None:
    env = make_env(catalog, t0, lease_wait=0.5)
    seeded = await env.seed()
    assert await env.lock.acquire(f"token-refresh:{seeded.id}", 60) is not None
    with pytest.raises(Conflict):
        await env.refresher.refresh_connector("org-1", KEY)
    assert env.provider.calls == []


async def test_a_request_waits_for_a_held_lease_only_until_its_deadline(catalog: Catalog, t0: Any) -> None:
    """Inside a request (1.5 s budget) the wait for another worker's lease is cut to what is
    left of the deadline: the caller hears "a refresh is running" in time, not after 10 s."""
    env = make_env(catalog, t0, lease_wait=10.0)
    seeded = await env.seed()
    assert await env.lock.acquire(f"token-refresh:{seeded.id}", 60) is not None
    with deadline(0.3), pytest.raises(Conflict):
        await env.refresher.refresh_connector("org-1", KEY)
    polls = [d for d in env.sleeps.delays if d == POLL_SECONDS]
    assert 1 <= len(polls) <= 3  # 0.3 s of 0.1 s polls; without the cut: 100
    assert env.provider.calls == []


async def test_fresh_token_refreshes_only_when_due(env: Env) -> None:
    await env.seed()
    assert (await env.refresher.fresh_token("org-1", KEY)).tokens.access_token == "PLANTED-AT-1"
    env.make_due()
    assert (await env.refresher.fresh_token("org-1", KEY)).tokens.access_token == ("PLANTED-AT-new-1")


async def test_fresh_token_serves_a_due_unexpired_token_while_another_worker_holds_its_lease(
    catalog: Catalog, t0: Any
) -> None:
    """A batch holds the token's lease (refreshing it, or only waiting for its turn to call the
    provider): a credential read of a due token that has not expired gets the stored token at
    once, not "a refresh is already running"; once it has expired, the read waits for the other
    worker and then still says so."""
    env = make_env(catalog, t0, lease_wait=0.5)
    seeded = await env.seed()
    env.make_due()
    assert await env.lock.acquire(f"token-refresh:{seeded.id}", 3600) is not None
    record = await env.refresher.fresh_token("org-1", KEY)
    assert record.tokens.access_token == "PLANTED-AT-1"
    assert env.provider.calls == []
    assert POLL_SECONDS not in env.sleeps.delays  # served at once, without waiting for the lease
    env.clock.advance(600)  # past its expiry, the lease still held
    with pytest.raises(Conflict):
        await env.refresher.fresh_token("org-1", KEY)
    assert env.provider.calls == []
    assert POLL_SECONDS in env.sleeps.delays  # an expired one waited for the other worker


async def test_fresh_token_of_a_resting_expired_token_says_when_to_retry(env: Env) -> None:
    await env.seed(expires_in=600)
    env.clock.advance(590)
    env.provider.answers = [RetryableProviderError("down", status=503) for _ in range(3)]
    assert (await env.refresher.refresh_due()).failed == 1
    env.clock.advance(11)  # expired, still resting (the first cooldown is at least 30 s)
    with pytest.raises(RetryableProviderError) as info:
        await env.refresher.fresh_token("org-1", KEY)
    assert info.value.retry_after is not None and info.value.retry_after > 0


# -- expiry --------------------------------------------------------------------------------------


async def test_sweep_announces_expiry_exactly_once(env: Env) -> None:
    await env.seed()
    env.clock.advance(3601)
    assert await env.refresher.sweep_expired() == 1
    assert await env.refresher.sweep_expired() == 0
    assert await env.token_events() == ["TOKEN_EXPIRED"]
    # It stays refreshable (an outage, not a dead grant)...
    assert (await env.connector()).auth_status.state == AuthState.AUTHENTICATED
    assert (await env.refresher.refresh_due()).refreshed == 1
    # ...and a refreshed token can expire (and be announced) again.
    env.clock.advance(3601)
    assert await env.refresher.sweep_expired() == 1
    assert await env.token_events() == ["TOKEN_EXPIRED", "TOKEN_REFRESHED", "TOKEN_EXPIRED"]


async def test_expired_token_without_refresh_token_needs_reauthorization(env: Env) -> None:
    await env.seed(refresh=None)
    env.clock.advance(3601)
    assert await env.refresher.sweep_expired() == 1
    assert (await env.token()).status == TokenStatus.NEEDS_REAUTHENTICATION
    assert (await env.connector()).auth_status.state == AuthState.NEEDS_REAUTHENTICATION
    assert await env.token_events() == ["TOKEN_EXPIRED"]
    with pytest.raises(ReauthorizationRequired):
        await env.refresher.fresh_token("org-1", KEY)


# -- the loop ------------------------------------------------------------------------------------


async def test_run_once_refreshes_sweeps_and_purges(env: Env) -> None:
    await env.seed()
    await env.seed("org-2", refresh=None, expires_in=60)
    states = env.refresher.states
    assert states is not None
    await states.put(
        PendingAuthorization(
            state_hash="h",
            org_id="o",
            user_id="u",
            connector_key=KEY,
            redirect_uri="http://localhost/cb",
            expires_at=env.clock.now() + timedelta(minutes=10),
        )
    )
    env.make_due()
    report = await env.refresher.run_once()
    assert report.refreshed == 1
    assert (await env.token("org-2")).expiry_notified
    assert env.storage.states == {}


async def test_run_forever_survives_outages_and_stops(catalog: Catalog, t0: Any, caplog: Any) -> None:
    env = make_env(catalog, t0)
    rounds = {"n": 0}
    stop = asyncio.Event()

    def down() -> Any:
        rounds["n"] += 1
        if rounds["n"] >= 6:
            stop.set()
        raise Unavailable("storage is down")

    env.ctx.uow = down
    with caplog.at_level(logging.WARNING):
        await asyncio.wait_for(env.refresher.run_forever(0.001, stop), timeout=5)
    assert rounds["n"] >= 6
    assert "storage is down" in caplog.text


async def test_no_secret_reaches_the_logs(env: Env, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    await env.seed()
    await env.seed("org-2")
    env.make_due()
    env.provider.answers = [
        RetryableProviderError("provider unavailable: HTTP 503", status=503),
        {"access_token": "PLANTED-AT-2", "refresh_token": "PLANTED-RT-2"},
        ReauthorizationRequired("provider refused the grant: invalid_grant"),
    ]
    await env.refresher.run_once()
    record = await env.token()
    assert "PLANTED" not in caplog.text
    assert "PLANTED" not in repr(record)
    assert caplog.records  # it did log


async def test_forced_refresh_respects_the_backoff(catalog: Catalog, t0: Any) -> None:
    env = make_env(catalog, t0)
    await env.seed()
    env.provider.answers = [RetryableProviderError("slow down", status=429, retry_after=3600)] * 3
    with pytest.raises(RetryableProviderError):
        await env.refresher.refresh_connector("org-1", KEY)
    calls = len(env.provider.calls)
    for _ in range(5):
        with pytest.raises(RetryableProviderError) as err:
            await env.refresher.refresh_connector("org-1", KEY)
        assert err.value.retry_after is not None and err.value.retry_after > 3000
    assert len(env.provider.calls) == calls  # no storm: the provider was not asked again


# -- a late success never overrides a state a person or the provider set -------------------------


async def test_a_refresh_finishing_after_the_connector_was_disabled_keeps_it_paused(env: Env) -> None:
    """Disabling pauses the token outside the refresh lease. The refresh in flight still stores
    the rotated refresh token (the provider retired the old one) but the token stays paused and
    no credentials are served."""
    from connector_core.errors import ConnectorDisabled
    from connector_core.services.connectors import ConnectorService

    await env.seed()
    env.make_due()
    connectors = ConnectorService(env.ctx)

    async def person_disables(used: str) -> None:
        await connectors.set_enabled("org-1", "u1", KEY, False)

    env.provider.before_answer = person_disables
    env.provider.answers = [{"access_token": "PLANTED-AT-2", "refresh_token": "PLANTED-RT-2", "expires_in": 3600}]
    await env.refresher.refresh_due()
    record = await env.token()
    assert record.status == TokenStatus.PAUSED
    assert record.tokens.refresh_token == "PLANTED-RT-2"  # the newest the provider issued
    assert not (await env.connector()).is_enabled
    with pytest.raises(ConnectorDisabled):
        await env.refresher.fresh_token("org-1", KEY)
    env.clock.advance(7200)
    assert (await env.refresher.refresh_due()).total == 0  # not refreshed while paused
    # enabling again resumes it with the stored (rotated) material
    await connectors.set_enabled("org-1", "u1", KEY, True)
    assert (await env.refresher.refresh_due()).refreshed == 1
    assert env.provider.calls[-1] == "PLANTED-RT-2"


async def test_a_refresh_finishing_after_reauthorization_was_required_keeps_that_verdict(env: Env) -> None:
    """Another worker (whose lease had lapsed) was told invalid_grant and marked the token; the
    late success keeps the new material but does not silently make the token ACTIVE again."""
    seeded = await env.seed()
    env.make_due()

    async def provider_refused_elsewhere(used: str) -> None:
        refused = ReauthorizationRequired("refused", error_code="invalid_grant")
        await env.changed_elsewhere(
            seeded.id, lambda other: other.apply_reauthorization_required(refused, now=env.clock.now(), ids=env.ctx.ids)
        )

    env.provider.before_answer = provider_refused_elsewhere
    env.provider.answers = [{"access_token": "PLANTED-AT-2", "refresh_token": "PLANTED-RT-2", "expires_in": 3600}]
    await env.refresher.refresh_due()
    record = await env.token()
    assert record.status == TokenStatus.NEEDS_REAUTHENTICATION
    assert record.tokens.refresh_token == "PLANTED-RT-2"
    assert await env.token_events() == ["TOKEN_EXPIRED"]  # one terminal event, no TOKEN_REFRESHED
    with pytest.raises(ReauthorizationRequired):
        await env.refresher.fresh_token("org-1", KEY)


async def test_a_refresh_finishing_after_a_revocation_is_not_stored_and_is_revoked(env: Env) -> None:
    """The refresh's lease lapsed and a person revoked the connector meanwhile: the tokens the
    provider issued late are neither stored nor served, and are revoked at the provider."""
    seeded = await env.seed()
    env.make_due()

    async def revoked_meanwhile(used: str) -> None:
        await env.changed_elsewhere(
            seeded.id, lambda other: other.revoke(now=env.clock.now(), ids=env.ctx.ids), delete=True
        )

    env.provider.before_answer = revoked_meanwhile
    env.provider.answers = [{"access_token": "PLANTED-AT-2", "refresh_token": "PLANTED-RT-2", "expires_in": 3600}]
    spec = OAuthSpec("https://idp.test/auth", "https://idp.test/token", revocation_url="https://idp.test/revoke")

    async def with_revocation(org: str, key: str) -> ResolvedProvider:
        return ResolvedProvider(spec, CLIENT)

    env.refresher._resolve = with_revocation
    assert await env.refresher.refresh_due() == RefreshReport(skipped=1)
    async with env.ctx.uow() as uow:
        assert await uow.tokens.get(seeded.id) is None
    assert env.provider.revoked == [("PLANTED-RT-2", "refresh_token"), ("PLANTED-AT-2", "access_token")]
    assert await env.token_events() == ["TOKEN_REVOKED"]


# -- the lease outlives the work, or the work stops ----------------------------------------------


async def test_storing_through_an_outage_keeps_the_lease(env: Env) -> None:
    """While the refreshed (rotated) token waits for the store to come back, the lease is
    renewed: no other worker may send the retired refresh token meanwhile."""
    seeded = await env.seed()
    env.make_due()
    env.provider.answers = [{"access_token": "PLANTED-AT-2", "refresh_token": "PLANTED-RT-2", "expires_in": 3600}]
    failing_commits(env, 4)
    taken: list[bool] = []

    async def time_passes(waits: int) -> None:
        env.clock.advance(40)  # two of these outlast a 60 s lease that is not renewed
        other = await env.lock.acquire(f"token-refresh:{seeded.id}", 1)
        taken.append(other is not None)

    env.sleeps.hook = time_passes
    assert (await env.refresher.refresh_due()).refreshed == 1
    assert taken == [False] * 4
    assert (await env.token()).tokens.refresh_token == "PLANTED-RT-2"


async def test_storing_stops_when_the_lease_is_lost(env: Env, caplog: Any) -> None:
    """Another worker took the lease over during the outage: this one stops trying to store."""
    seeded = await env.seed()
    env.make_due()
    box = failing_commits(env, 10)

    async def taken_over(waits: int) -> None:
        if waits == 1:
            env.clock.advance(61)
            assert await env.lock.acquire(f"token-refresh:{seeded.id}", 600) is not None

    env.sleeps.hook = taken_over
    with caplog.at_level(logging.ERROR):
        assert await env.refresher.refresh_due() == RefreshReport(failed=1)
    assert box["attempts"] == 2
    assert "lease cannot be held" in caplog.text
    assert "PLANTED" not in caplog.text


async def test_every_refresh_outcome_is_told_with_its_connector(env: Env) -> None:
    """What the metrics count: each refresh's connector key and outcome, an attempt that raised
    (its outcome could not be stored) as failed."""
    told: list[tuple[str, RefreshOutcome]] = []
    env.refresher.on_outcome = lambda key, outcome: told.append((key, outcome))
    await env.seed()
    env.make_due()
    assert (await env.refresher.refresh_due()).refreshed == 1
    failing_commits(env, 100)
    with pytest.raises(Unavailable):
        await env.refresher.refresh_connector("org-1", "google")
    assert told == [("googleWorkspace", RefreshOutcome.REFRESHED), ("googleWorkspace", RefreshOutcome.FAILED)]
