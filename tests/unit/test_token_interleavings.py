"""Two refreshers and a person (disable, enable, revoke) interleaved by Hypothesis.

A deterministic scheduler runs everything on one event loop over the in-memory adapters. The
provider's refresh calls block on futures that the test releases in a Hypothesis-chosen order,
and between two steps the loop runs until every task is finished or waits for the provider, so
each step's effects are complete before the invariants are checked:

* no credentials are served for a disabled or revoked connector;
* no refresh token is sent to the provider twice;
* the stored refresh token is always the newest the provider issued, and nothing the provider
  issued is live there but the stored token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from attrs import define, field
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.memory import MemoryKeyValueStore, MemoryLeaseLock, MemoryOAuthStateStore
from adapters.memory.storage import MemoryStorage
from adapters.system import ManualClock
from connector_core.catalog import OAuthSpec, load_default_catalog
from connector_core.errors import ConnectorManagerError, ReauthorizationRequired
from connector_core.model.connector import Connector
from connector_core.ports.oauth_provider import ClientCredentials
from connector_core.services.connectors import ConfigUpdate, ConnectorService
from connector_core.services.context import ServiceContext
from connector_core.services.oauth import OAuthService
from connector_core.services.redirects import OAuthSettings
from connector_core.services.refresh import TokenRefresher
from connector_core.tokens import TokenRecord, TokenSet, TokenStatus
from tests.conftest import CountingIds, SeededRandom

ORG, USER, KEY = "org-1", "person", "googleWorkspace"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_HOUR = timedelta(hours=1)

#: loop iterations a step may take to settle; a step needing more is a livelock (a failure)
_SETTLE_LIMIT = 50_000


@define
class _Call:
    refresh_token: str
    answer: asyncio.Future[Mapping[str, Any]]


@define
class GatedProvider:
    """A rotating OAuth provider whose refresh answers wait until the test releases them.

    It decides when a call is released, as a provider decides when it processes a request: a
    refresh token that is the newest of a live grant rotates; any other is refused."""

    newest: str | None = "RT-0"
    issued: list[str] = field(factory=lambda: ["RT-0"])
    sent: list[str] = field(factory=list)
    revoked: set[str] = field(factory=set)
    waiting: list[_Call] = field(factory=list)

    async def refresh(
        self, spec: OAuthSpec, client: ClientCredentials, *, refresh_token: str, scopes: Sequence[str] = ()
    ) -> Mapping[str, Any]:
        self.sent.append(refresh_token)
        call = _Call(refresh_token, asyncio.get_running_loop().create_future())
        self.waiting.append(call)
        return await call.answer

    def release(self, index: int) -> None:
        call = self.waiting.pop(index % len(self.waiting))
        if call.refresh_token != self.newest or call.refresh_token in self.revoked:
            call.answer.set_exception(ReauthorizationRequired("refused", error_code="invalid_grant"))
            return
        n = len(self.issued)
        self.newest = f"RT-{n}"
        self.issued.append(self.newest)
        call.answer.set_result({"access_token": f"AT-{n}", "refresh_token": self.newest, "expires_in": 3600})

    async def revoke(self, spec: OAuthSpec, client: ClientCredentials, *, token: str, token_type_hint: str) -> None:
        self.revoked.add(token)
        if token == self.newest:  # revoking the refresh token kills the grant
            self.newest = None

    def live(self) -> set[str]:
        return {t for t in (self.newest,) if t is not None} - self.revoked

    async def exchange_code(self, *a: Any, **k: Any) -> Mapping[str, Any]:
        raise AssertionError("not used")

    async def verify_id_token(self, *a: Any, **k: Any) -> Mapping[str, Any]:
        raise AssertionError("not used")

    async def discover(self, issuer: str) -> Mapping[str, Any]:
        raise AssertionError("not used")


class World:
    def __init__(self) -> None:
        catalog = load_default_catalog()
        self.storage = MemoryStorage()
        self.clock = ManualClock(T0)
        self.ctx = ServiceContext(
            catalog=catalog,
            uow=self.storage.unit_of_work,
            secrets=MemoryKeyValueStore(),
            clock=self.clock,
            ids=CountingIds(),
            random=SeededRandom(),
        )
        self.provider = GatedProvider()
        lock = MemoryLeaseLock(self.clock, sleep=_yield)  # the lock server every process shares
        self.connectors = ConnectorService(self.ctx)
        self.oauth = OAuthService(
            self.ctx, self.provider, MemoryOAuthStateStore(self.storage), OAuthSettings(), lock=lock
        )
        self.refreshers = [
            TokenRefresher(self.ctx, self.provider, lock, oauth=self.oauth, sleep=_yield) for _ in range(2)
        ]
        self.tasks: list[asyncio.Task[Any]] = []

    async def seed(self) -> None:
        entry = self.ctx.catalog.get(KEY)
        update = ConfigUpdate(
            base_url="http://localhost", auth={"clientId": "cid", "clientSecret": "cs"}, sync={}, filters={}
        )
        await self.connectors.update_configuration(ORG, USER, KEY, update)
        now = self.clock.now()
        async with self.ctx.uow() as uow:
            connector = await uow.connectors.get(ORG, KEY)
            assert connector is not None
            connector.record_authorization(entry, ("DRIVE",), by=USER, now=now, ids=self.ctx.ids)
            await uow.connectors.save(connector)
            tokens = TokenSet(access_token="AT-0", obtained_at=now, refresh_token="RT-0", expires_at=now + _HOUR)
            record = TokenRecord.create(
                token_id="tok-1",
                org_id=ORG,
                connector_key=KEY,
                account_id=USER,
                service_type=entry.token_service_type,
                tokens=tokens,
                lifecycle=self.ctx.lifecycle,
                now=now,
                ids=self.ctx.ids,
            )
            await uow.tokens.add(record)
            await uow.outbox.add([*connector.pull_events(), *record.pull_events()])
            await uow.commit()

    def start(self, work: Callable[[], Awaitable[Any]]) -> None:
        async def quietly() -> None:
            try:
                await work()
            except ConnectorManagerError:
                pass  # refused (disabled, needs authorization, lease held, ...): a fine outcome

        self.tasks.append(asyncio.ensure_future(quietly()))

    async def settle(self) -> None:
        """Run the loop until every task is done or waits for an unreleased provider call
        (each such call holds exactly one task; a released one is no longer waiting)."""
        for _ in range(_SETTLE_LIMIT):
            await asyncio.sleep(0)
            self.tasks = [t for t in self.tasks if not t.done()]
            if len(self.tasks) == len(self.provider.waiting):
                return
        raise AssertionError("the tasks did not settle")

    async def check(self) -> None:
        async with self.ctx.uow() as uow:
            connector: Connector | None = await uow.connectors.get(ORG, KEY)
            record = await uow.tokens.get_for_connector(ORG, KEY)
        sent = self.provider.sent
        assert len(sent) == len(set(sent)), f"a refresh token was sent twice: {sent}"
        if record is None:
            assert self.provider.live() == set(), "tokens live at the provider for a revoked connector"
            return
        served = record.status == TokenStatus.ACTIVE
        assert not (served and (connector is None or not connector.is_enabled)), (
            f"credentials served for a disabled connector (token {record.status})"
        )
        assert record.tokens.refresh_token == self.provider.newest or self.provider.newest is None, (
            f"stored {record.tokens.refresh_token}, the provider's newest is {self.provider.newest}"
        )
        assert self.provider.live() <= {record.tokens.refresh_token}


async def _yield(delay: float) -> None:
    await asyncio.sleep(0)


Step = tuple[str, int]

steps = st.lists(
    st.tuples(
        st.sampled_from(["refresh", "refresh due", "release", "disable", "enable", "revoke", "time passes"]),
        st.integers(0, 3),
    ),
    max_size=14,
)


async def run(plan: list[Step]) -> None:
    world = World()
    await world.seed()
    await world.check()
    for action, n in plan:
        refresher = world.refreshers[n % 2]
        if action == "refresh":
            world.start(partial(refresher.refresh_connector, ORG, KEY))
        elif action == "refresh due":
            world.start(refresher.refresh_due)
        elif action == "release" and world.provider.waiting:
            world.provider.release(n)
        elif action == "disable":
            world.start(lambda: world.connectors.set_enabled(ORG, USER, KEY, False))
        elif action == "enable":
            world.start(lambda: world.connectors.set_enabled(ORG, USER, KEY, True))
        elif action == "revoke":
            world.start(lambda: world.oauth.revoke(ORG, USER, KEY))
        elif action == "time passes" and not world.tasks:
            world.clock.advance(3600)  # tokens fall due; only between runs, never mid-lease
        await world.settle()
        await world.check()
    while world.provider.waiting:  # every call is answered in the end
        world.provider.release(0)
        await world.settle()
        await world.check()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps)
def test_refreshers_and_a_person_interleaved(plan: list[Step]) -> None:
    asyncio.run(run(plan))


def test_the_paused_token_is_not_resurrected_by_a_refresh_in_flight() -> None:
    """The interleaving the rule was made for, spelled out."""
    asyncio.run(run([("refresh", 0), ("disable", 0), ("release", 0)]))
