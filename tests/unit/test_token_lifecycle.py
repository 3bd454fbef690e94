"""Token sets, the refresh lifecycle, error classification and TokenRecord transitions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from connector_core.errors import (
    DomainRuleViolation,
    ProviderError,
    ReauthorizationRequired,
    RetryableProviderError,
    ValidationError,
)
from connector_core.model.events import TOKEN_TOPIC, DomainEvent, TokenEvent, TokenEventType
from connector_core.tokens import (
    REAUTH_ERROR_CODES,
    RefreshFate,
    RefreshPolicy,
    TokenLifecycle,
    TokenRecord,
    TokenSet,
    TokenStatus,
    classify_token_error,
)
from tests.conftest import CountingIds, SeededRandom

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GRANT_DEAD = ("invalid_grant", "unauthorized_client", "invalid_client")


class FixedRandom:
    """A RandomSource that always answers the same value."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


unit_floats = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@st.composite
def policies(draw: st.DrawFn) -> RefreshPolicy:
    cooldown_base = timedelta(seconds=draw(st.integers(1, 600)))
    return RefreshPolicy(
        margin=timedelta(seconds=draw(st.integers(1, 3600))),
        jitter=timedelta(seconds=draw(st.integers(0, 900))),
        attempts=draw(st.integers(1, 5)),
        retry_base_seconds=draw(st.floats(0.01, 10.0)),
        retry_cap_seconds=draw(st.floats(10.0, 120.0)),
        cooldown_base=cooldown_base,
        cooldown_cap=cooldown_base * draw(st.integers(1, 256)),
    )


def _tokens(
    *,
    lifetime: timedelta | None = timedelta(hours=1),
    refresh: str | None = "RT-secret-0",
    access: str = "AT-secret-0",
    id_token: str | None = None,
    scopes: frozenset[str] = frozenset({"openid"}),
    obtained_at: datetime = T0,
) -> TokenSet:
    return TokenSet(
        access_token=access,
        obtained_at=obtained_at,
        refresh_token=refresh,
        expires_at=None if lifetime is None else obtained_at + lifetime,
        scopes=scopes,
        id_token=id_token,
    )


def _assert_no_secret(secrets: set[str], *objects: Any) -> None:
    for obj in objects:
        text = obj if isinstance(obj, str) else repr(obj)
        for secret in secrets:
            assert secret not in text, f"secret leaked into {type(obj).__name__}: {text}"


# -- refresh_due_at -----------------------------------------------------------------------------


@PROPS
@given(
    policy=policies(),
    lifetime_s=st.one_of(st.integers(1, 120), st.integers(1, 30 * 24 * 3600)),
    r=unit_floats,
)
def test_refresh_due_at_is_before_expiry_within_margin_and_jitter(
    policy: RefreshPolicy, lifetime_s: int, r: float
) -> None:
    tokens = _tokens(lifetime=timedelta(seconds=lifetime_s))
    assert tokens.expires_at is not None
    due = TokenLifecycle(policy, FixedRandom(r)).refresh_due_at(tokens)
    assert due is not None
    lifetime = tokens.expires_at - tokens.obtained_at
    margin = min(policy.margin, lifetime / 2)
    assert due < tokens.expires_at
    assert due <= tokens.expires_at - margin
    # Jitter is bounded by the policy, and never eats more than a quarter of the lifetime.
    jitter = tokens.expires_at - margin - due
    assert timedelta(0) <= jitter <= policy.jitter
    assert jitter <= lifetime / 4 + timedelta(microseconds=1)
    assert due > tokens.obtained_at


@PROPS
@given(policy=policies(), lifetime_s=st.integers(1, 30 * 24 * 3600))
def test_refresh_due_at_without_randomness_is_exactly_the_margin(policy: RefreshPolicy, lifetime_s: int) -> None:
    tokens = _tokens(lifetime=timedelta(seconds=lifetime_s))
    assert tokens.expires_at is not None
    due = TokenLifecycle(policy, FixedRandom(0.0)).refresh_due_at(tokens)
    assert due == tokens.expires_at - min(policy.margin, timedelta(seconds=lifetime_s) / 2)


def test_refresh_due_at_default_policy_example() -> None:
    lifecycle = TokenLifecycle(RefreshPolicy(), FixedRandom(0.5))
    due = lifecycle.refresh_due_at(_tokens(lifetime=timedelta(hours=1)))
    assert due == T0 + timedelta(minutes=49)  # 60 - 10 (margin) - 1 (half the 2 min jitter)


@PROPS
@given(policy=policies(), r=unit_floats, lifetime_s=st.integers(0, 10**6))
def test_refresh_due_at_is_none_without_refresh_token_or_expiry(
    policy: RefreshPolicy, r: float, lifetime_s: int
) -> None:
    lifecycle = TokenLifecycle(policy, FixedRandom(r))
    assert lifecycle.refresh_due_at(_tokens(refresh=None)) is None
    assert lifecycle.refresh_due_at(_tokens(lifetime=timedelta(seconds=lifetime_s), refresh=None)) is None
    assert lifecycle.refresh_due_at(_tokens(lifetime=None)) is None


# -- TokenSet -----------------------------------------------------------------------------------

scope_names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=","),
    min_size=1,
    max_size=15,
)


@PROPS
@given(
    requested=st.frozensets(scope_names, max_size=5),
    expires_in=st.one_of(st.none(), st.integers(0, 10**7), st.integers(0, 10**7).map(str)),
    has_refresh=st.booleans(),
)
def test_from_token_response_keeps_the_requested_scopes_when_none_are_named(
    requested: frozenset[str], expires_in: int | str | None, has_refresh: bool
) -> None:
    data: dict[str, Any] = {"access_token": "AT-secret-1", "token_type": "bearer"}
    if expires_in is not None:
        data["expires_in"] = expires_in
    if has_refresh:
        data["refresh_token"] = "RT-secret-1"
    tokens = TokenSet.from_token_response(data, now=T0, requested_scopes=requested)
    assert tokens.scopes == requested
    assert tokens.access_token == "AT-secret-1"
    assert tokens.token_type == "bearer"
    assert tokens.obtained_at == T0
    assert tokens.refresh_token == ("RT-secret-1" if has_refresh else None)
    assert tokens.can_refresh is has_refresh
    if expires_in is None:
        assert tokens.expires_at is None
        assert not tokens.is_expired(T0 + timedelta(days=10_000))
    else:
        assert tokens.expires_at == T0 + timedelta(seconds=int(expires_in))
    _assert_no_secret({"AT-secret-1", "RT-secret-1"}, tokens)


@PROPS
@given(
    granted=st.lists(scope_names, min_size=1, max_size=5),
    requested=st.frozensets(scope_names, max_size=3),
    separator=st.sampled_from([" ", ","]),
)
def test_from_token_response_takes_the_granted_scopes(
    granted: list[str], requested: frozenset[str], separator: str
) -> None:
    data = {"access_token": "AT", "scope": separator.join(granted)}
    tokens = TokenSet.from_token_response(data, now=T0, scope_separator=separator, requested_scopes=requested)
    assert tokens.scopes == frozenset(granted)
    as_list = TokenSet.from_token_response({"access_token": "AT", "scope": granted}, now=T0, requested_scopes=requested)
    assert as_list.scopes == frozenset(granted)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"access_token": ""},
        {"access_token": None, "refresh_token": "RT-secret-9"},
        {"access_token": 12345, "refresh_token": "RT-secret-9"},
    ],
)
def test_from_token_response_without_access_token_names_the_field(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        TokenSet.from_token_response(data, now=T0)
    assert info.value.errors[0]["path"] == "access_token"
    assert "RT-secret-9" not in str(info.value)
    assert "12345" not in str(info.value)


@pytest.mark.parametrize("expires_in", [True, False, "soon", -5, [], {}])
def test_from_token_response_ignores_unusable_expires_in(expires_in: Any) -> None:
    tokens = TokenSet.from_token_response({"access_token": "AT", "expires_in": expires_in}, now=T0)
    assert tokens.expires_at is None


@PROPS
@given(
    rotated=st.booleans(),
    new_scope=st.one_of(st.none(), st.just("a b")),
    new_id_token=st.booleans(),
    expires_in=st.integers(1, 10**6),
    later=st.integers(0, 10**6),
)
def test_refreshed_keeps_or_rotates_the_refresh_token(
    rotated: bool, new_scope: str | None, new_id_token: bool, expires_in: int, later: int
) -> None:
    old = TokenSet(
        access_token="AT-secret-old",
        obtained_at=T0,
        refresh_token="RT-secret-old",
        expires_at=T0 + timedelta(hours=1),
        refresh_token_expires_at=T0 + timedelta(days=90),
        scopes=frozenset({"x", "y"}),
        id_token="IDT-secret-old",
    )
    now = T0 + timedelta(seconds=later)
    data: dict[str, Any] = {"access_token": "AT-secret-new", "expires_in": expires_in}
    if rotated:
        data["refresh_token"] = "RT-secret-new"
        data["refresh_token_expires_in"] = 3600
    if new_scope is not None:
        data["scope"] = new_scope
    if new_id_token:
        data["id_token"] = "IDT-secret-new"
    new = old.refreshed(data, now=now)
    assert new.access_token == "AT-secret-new"
    assert new.obtained_at == now
    assert new.expires_at == now + timedelta(seconds=expires_in)
    if rotated:
        assert new.refresh_token == "RT-secret-new"
        assert new.refresh_token_expires_at == now + timedelta(hours=1)
    else:
        assert new.refresh_token == "RT-secret-old"
        assert new.refresh_token_expires_at == old.refresh_token_expires_at
    assert new.scopes == (frozenset({"a", "b"}) if new_scope else old.scopes)
    assert new.id_token == ("IDT-secret-new" if new_id_token else "IDT-secret-old")
    _assert_no_secret(
        {"AT-secret-old", "AT-secret-new", "RT-secret-old", "RT-secret-new", "IDT-secret"},
        old,
        new,
    )


@pytest.mark.parametrize("lifetime_s", [0, 1, 3600])
def test_is_expired_at_and_after_expires_at(lifetime_s: int) -> None:
    tokens = _tokens(lifetime=timedelta(seconds=lifetime_s))
    assert tokens.expires_at is not None
    assert tokens.is_expired(tokens.expires_at)
    assert tokens.is_expired(tokens.expires_at + timedelta(seconds=1))
    assert not tokens.is_expired(tokens.expires_at - timedelta(microseconds=1))


# -- classify_token_error -----------------------------------------------------------------------

other_codes = st.one_of(
    st.none(),
    st.sampled_from(["invalid_request", "invalid_scope", "server_error", "temporarily_unavailable"]),
    st.text(max_size=20).filter(lambda c: c not in REAUTH_ERROR_CODES),
)
retry_afters = st.one_of(st.none(), st.floats(0, 3600))


@PROPS
@given(
    status=st.one_of(st.none(), st.integers(500, 599), st.just(429)),
    code=other_codes,
    retry_after=retry_afters,
)
def test_network_5xx_and_429_are_retryable(status: int | None, code: str | None, retry_after: float | None) -> None:
    err = classify_token_error(status, code, retry_after=retry_after)
    assert type(err) is RetryableProviderError
    assert err.retry_after == retry_after
    assert err.status == status
    assert err.error_code == code


@PROPS
@given(
    status=st.one_of(st.none(), st.integers(400, 599)),
    code=st.sampled_from(GRANT_DEAD),
    retry_after=retry_afters,
)
def test_dead_grants_need_reauthorization(status: int | None, code: str, retry_after: float | None) -> None:
    err = classify_token_error(status, code, retry_after=retry_after)
    assert type(err) is ReauthorizationRequired
    assert not isinstance(err, RetryableProviderError)
    assert err.error_code == code
    assert code in err.message


@PROPS
@given(
    status=st.integers(400, 499).filter(lambda s: s != 429),
    code=other_codes,
)
def test_other_client_errors_are_plain_provider_errors(status: int, code: str | None) -> None:
    err = classify_token_error(status, code)
    assert type(err) is ProviderError
    assert err.status == status


def test_classify_examples() -> None:
    assert type(classify_token_error(None, None)) is RetryableProviderError
    assert "network error" in classify_token_error(None, None).message
    assert "HTTP 503" in classify_token_error(503, None).message
    throttled = classify_token_error(429, None, retry_after=17.0)
    assert isinstance(throttled, RetryableProviderError)
    assert throttled.retry_after == 17.0
    assert type(classify_token_error(400, "invalid_grant")) is ReauthorizationRequired
    assert type(classify_token_error(401, "invalid_client")) is ReauthorizationRequired
    assert type(classify_token_error(400, "unauthorized_client")) is ReauthorizationRequired
    assert type(classify_token_error(400, "invalid_request")) is ProviderError


# -- retry_delay and cooldown -------------------------------------------------------------------


@PROPS
@given(policy=policies(), r=unit_floats, retry_after=retry_afters)
def test_retry_delay_respects_retry_after_and_grows(policy: RefreshPolicy, r: float, retry_after: float | None) -> None:
    lifecycle = TokenLifecycle(policy, FixedRandom(r))
    plain = [lifecycle.retry_delay(a) for a in range(1, 20)]
    assert plain == sorted(plain)
    assert plain[0] >= policy.retry_base_seconds
    assert all(d <= 2 * policy.retry_cap_seconds for d in plain)
    if policy.retry_base_seconds * 2 < policy.retry_cap_seconds:
        assert plain[1] > plain[0]
    floored = [lifecycle.retry_delay(a, retry_after) for a in range(1, 20)]
    assert all(d >= (retry_after or 0.0) for d in floored)
    assert floored == sorted(floored)
    assert floored == [max(d, retry_after or 0.0) for d in plain]


@PROPS
@given(
    policy=policies(),
    r=unit_floats,
    retry_after=retry_afters,
    failures=st.integers(1, 30),
)
def test_cooldown_is_capped_and_nondecreasing(
    policy: RefreshPolicy, r: float, retry_after: float | None, failures: int
) -> None:
    lifecycle = TokenLifecycle(policy, FixedRandom(r))
    floor = timedelta(seconds=retry_after or 0)
    rests = [lifecycle.cooldown(f, retry_after) for f in range(1, failures + 1)]
    assert rests == sorted(rests)
    for rest in rests:
        assert rest >= floor
        assert rest <= max(policy.cooldown_cap, floor)
        assert rest > timedelta(0)
    bases = [lifecycle.cooldown(f) for f in range(1, failures + 1)]
    assert bases == sorted(bases)
    assert bases[0] >= policy.cooldown_base / 2
    assert all(b <= policy.cooldown_cap for b in bases)


def test_cooldown_default_policy_doubles_up_to_an_hour() -> None:
    lifecycle = TokenLifecycle(RefreshPolicy(), FixedRandom(0.999999))
    minutes = [lifecycle.cooldown(f).total_seconds() / 60 for f in range(1, 10)]
    assert [round(m) for m in minutes] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert lifecycle.cooldown(1, retry_after=7200) == timedelta(hours=2)


@pytest.mark.parametrize("failures", [41, 42, 1000])
def test_cooldown_survives_a_long_outage(failures: int) -> None:
    """failure_count grows by one per failed run and is never capped, so a provider that is
    down for a day or two pushes it past 41; the cooldown must still be the capped value."""
    policy = RefreshPolicy()
    lifecycle = TokenLifecycle(policy, FixedRandom(0.5))
    rest = lifecycle.cooldown(failures)
    assert rest == policy.cooldown_cap * 0.75


def test_a_token_keeps_resting_through_a_long_outage() -> None:
    """The refresh loop's path: one apply_retryable_failure per failed run, 60 runs in a row
    (with the default policy about two days of a provider answering 503)."""
    ids = CountingIds()
    lifecycle = TokenLifecycle(RefreshPolicy(), SeededRandom())
    record = _record(ids)
    now = T0
    outage = classify_token_error(503, None)
    assert isinstance(outage, RetryableProviderError)
    for _ in range(60):
        record.apply_retryable_failure(outage, lifecycle=lifecycle, now=now)
        assert record.next_attempt_at is not None
        assert now < record.next_attempt_at <= now + RefreshPolicy().cooldown_cap
        now = record.next_attempt_at
    assert record.failure_count == 60


# -- TokenRecord --------------------------------------------------------------------------------


def _record(ids: CountingIds, *, lifetime: timedelta = timedelta(hours=1)) -> TokenRecord:
    lifecycle = TokenLifecycle(RefreshPolicy(), SeededRandom())
    record = TokenRecord.create(
        token_id="tok-1",
        org_id="org-1",
        connector_key="googleWorkspace",
        account_id="acct-1",
        service_type="GOOGLE_DRIVE",
        tokens=_tokens(lifetime=lifetime, id_token="IDT-secret-0"),
        lifecycle=lifecycle,
        now=T0,
        ids=ids,
    )
    return record


def _types(events: list[DomainEvent]) -> list[TokenEventType]:
    out = []
    for e in events:
        assert isinstance(e, TokenEvent)
        out.append(e.token_event_type)
    return out


def test_create_emits_token_created() -> None:
    ids = CountingIds()
    record = _record(ids)
    events = record.pull_events()
    assert _types(events) == [TokenEventType.CREATED]
    event = events[0]
    assert isinstance(event, TokenEvent)
    assert event.event_type == "TOKEN_CREATED"
    assert event.topic == TOKEN_TOPIC
    assert event.token_reference_id == "tok-1"
    assert event.service_type == "GOOGLE_DRIVE"
    assert event.account_id == "acct-1"
    assert event.partition_key == "org-1:googleWorkspace"
    assert record.status == TokenStatus.ACTIVE
    assert record.refresh_due_at is not None
    assert record.refresh_due_at < T0 + timedelta(hours=1)
    assert record.pull_events() == []


@PROPS
@given(code=st.sampled_from(sorted(REAUTH_ERROR_CODES)), repeats=st.integers(1, 5))
def test_apply_reauthorization_required_emits_once(code: str, repeats: int) -> None:
    ids = CountingIds()
    record = _record(ids)
    record.pull_events()
    err = classify_token_error(400, code)
    for i in range(repeats):
        record.apply_reauthorization_required(err, now=T0 + timedelta(minutes=i), ids=ids)
    expected = TokenEventType.REVOKED if code in {"token_revoked", "access_denied"} else TokenEventType.EXPIRED
    assert _types(record.pull_events()) == [expected]
    assert record.status == TokenStatus.NEEDS_REAUTHENTICATION
    assert record.failure_count == 1
    assert record.next_attempt_at is None
    assert record.last_error == err.message
    lifecycle = TokenLifecycle(RefreshPolicy(), SeededRandom())
    assert not lifecycle.is_due(record, T0 + timedelta(days=1))


def test_check_expiry_emits_token_expired_once() -> None:
    ids = CountingIds()
    record = _record(ids)
    record.pull_events()
    assert record.check_expiry(now=T0 + timedelta(minutes=59), ids=ids) is False
    assert record.pull_events() == []
    later = T0 + timedelta(hours=1)
    assert record.check_expiry(now=later, ids=ids) is True
    assert record.check_expiry(now=later + timedelta(hours=1), ids=ids) is False
    assert _types(record.pull_events()) == [TokenEventType.EXPIRED]
    # A dead grant after the expiry was announced does not announce it again.
    record.apply_reauthorization_required(classify_token_error(400, "invalid_grant"), now=later, ids=ids)
    assert record.pull_events() == []
    assert record.status == TokenStatus.NEEDS_REAUTHENTICATION


def test_apply_refresh_resets_failure_state() -> None:
    ids = CountingIds()
    lifecycle = TokenLifecycle(RefreshPolicy(), SeededRandom())
    record = _record(ids)
    record.pull_events()
    now = T0 + timedelta(minutes=50)
    outage = classify_token_error(503, None, retry_after=30)
    assert isinstance(outage, RetryableProviderError)
    for _ in range(3):
        record.apply_retryable_failure(outage, lifecycle=lifecycle, now=now)
    assert record.pull_events() == []
    assert record.failure_count == 3
    assert record.next_attempt_at is not None and record.next_attempt_at >= now + timedelta(seconds=30)
    assert record.last_error is not None and "503" in record.last_error
    assert not lifecycle.is_due(record, now)
    later = now + timedelta(hours=2)
    record.check_expiry(now=later, ids=ids)
    assert _types(record.pull_events()) == [TokenEventType.EXPIRED]
    new = record.tokens.refreshed({"access_token": "AT-secret-2", "expires_in": 3600}, now=later)
    record.apply_refresh(new, lifecycle=lifecycle, now=later, ids=ids)
    assert _types(record.pull_events()) == [TokenEventType.REFRESHED]
    assert record.status == TokenStatus.ACTIVE
    assert record.failure_count == 0
    assert record.last_error is None
    assert record.next_attempt_at is None
    assert record.expiry_notified is False
    assert record.tokens.refresh_token == "RT-secret-0"
    assert record.refresh_due_at is not None
    assert later < record.refresh_due_at < later + timedelta(hours=1)
    assert record.updated_at == later


def test_no_secret_in_reprs_or_messages() -> None:
    ids = CountingIds()
    record = _record(ids)
    secrets = {"AT-secret-0", "RT-secret-0", "IDT-secret-0"}
    events = record.pull_events()
    record.apply_reauthorization_required(classify_token_error(400, "invalid_grant"), now=T0, ids=ids)
    events += record.pull_events()
    errors = [classify_token_error(s, c) for s in (None, 400, 429, 503) for c in (None, "invalid_grant")]
    _assert_no_secret(secrets, record, record.tokens, *events, *(str(e) for e in errors))
    assert "access_token" not in repr(record.tokens)


class TokenRecordMachine(RuleBasedStateMachine):
    """Random sequences of refreshes, failures, expiry checks, pauses and resumes, revocations,
    re-authorizations and refreshes that finish late (started, then overtaken by any of those),
    of one TokenRecord, checked against a small model.

    The rule for a late refresh: :meth:`TokenLifecycle.fate_of_refresh` against the record as
    it is when the refresh finishes; a stored late success keeps the status a person or the
    provider set meanwhile (PAUSED, NEEDS_REAUTHENTICATION)."""

    @initialize(lifetime_s=st.integers(60, 4 * 3600), seed=st.integers(0, 1000))
    def start(self, lifetime_s: int, seed: int) -> None:
        self.ids = CountingIds("ev")
        self.policy = RefreshPolicy()
        self.lifecycle = TokenLifecycle(self.policy, SeededRandom(seed))
        self.now = T0
        self.serial = 0
        self.secrets: set[str] = set()
        self.record = TokenRecord.create(
            token_id="tok-1",
            org_id="org-1",
            connector_key="googleWorkspace",
            account_id="acct-1",
            service_type="GOOGLE_DRIVE",
            tokens=self._new_tokens(timedelta(seconds=lifetime_s)),
            lifecycle=self.lifecycle,
            now=self.now,
            ids=self.ids,
        )
        self.event_ids: set[str] = set()
        self.expired_this_life = 0
        self._expect_events([TokenEventType.CREATED])
        # model
        self.status = TokenStatus.ACTIVE
        self.expiry_notified = False
        self.failures = 0
        #: refreshes under way: the refresh token each one sent
        self.in_flight: list[str] = []

    def _new_tokens(self, lifetime: timedelta, *, refresh: bool = True) -> TokenSet:
        self.serial += 1
        access, rt, idt = (f"{p}-secret-{self.serial:04d}" for p in ("AT", "RT", "IDT"))
        self.secrets |= {access, rt, idt}
        return TokenSet(
            access_token=access,
            obtained_at=self.now,
            refresh_token=rt if refresh else None,
            expires_at=self.now + lifetime,
            id_token=idt,
        )

    def _expect_events(self, expected: list[TokenEventType]) -> None:
        events = self.record.pull_events()
        assert _types(events) == expected
        for event in events:
            assert isinstance(event, TokenEvent)
            assert event.event_id not in self.event_ids
            self.event_ids.add(event.event_id)
            assert event.occurred_at == self.now
            assert event.token_reference_id == "tok-1"
            assert event.org_id == "org-1"
            _assert_no_secret(self.secrets, event)
            if event.token_event_type == TokenEventType.EXPIRED:
                self.expired_this_life += 1
            if event.token_event_type in (TokenEventType.CREATED, TokenEventType.REFRESHED):
                self.expired_this_life = 0

    def _reset_model(self) -> None:
        self.status = TokenStatus.ACTIVE
        self.expiry_notified = False
        self.failures = 0

    @rule(seconds=st.integers(0, 3 * 3600))
    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def check_expiry(self) -> None:
        should = (
            not self.expiry_notified and self.status != TokenStatus.REVOKED and self.record.tokens.is_expired(self.now)
        )
        assert self.record.check_expiry(now=self.now, ids=self.ids) is should
        if should:
            self.expiry_notified = True
        self._expect_events([TokenEventType.EXPIRED] if should else [])

    @precondition(lambda self: self.status == TokenStatus.ACTIVE)
    @rule(rotate=st.booleans(), expires_in=st.integers(60, 4 * 3600), scope=st.booleans())
    def refresh_succeeds(self, rotate: bool, expires_in: int, scope: bool) -> None:
        old = self.record.tokens
        self.serial += 1
        data: dict[str, Any] = {
            "access_token": f"AT-secret-{self.serial:04d}",
            "expires_in": expires_in,
        }
        self.secrets.add(data["access_token"])
        if rotate:
            data["refresh_token"] = f"RT-secret-{self.serial:04d}"
            self.secrets.add(data["refresh_token"])
        if scope:
            data["scope"] = "openid email"
        new = old.refreshed(data, now=self.now)
        assert new.refresh_token == (data["refresh_token"] if rotate else old.refresh_token)
        assert new.scopes == (frozenset({"openid", "email"}) if scope else old.scopes)
        self.record.apply_refresh(new, lifecycle=self.lifecycle, now=self.now, ids=self.ids)
        self._reset_model()
        self._expect_events([TokenEventType.REFRESHED])
        assert self.record.tokens is new

    @precondition(lambda self: self.status == TokenStatus.ACTIVE)
    @rule(
        status=st.sampled_from([None, 500, 502, 503, 429]),
        retry_after=st.one_of(st.none(), st.integers(0, 7200)),
    )
    def refresh_fails_for_now(self, status: int | None, retry_after: int | None) -> None:
        err = classify_token_error(status, None, retry_after=retry_after)
        assert isinstance(err, RetryableProviderError)
        self.record.apply_retryable_failure(err, lifecycle=self.lifecycle, now=self.now)
        self.failures += 1
        self._expect_events([])
        assert self.record.last_error == err.message
        rest = self.record.next_attempt_at
        assert rest is not None
        floor = timedelta(seconds=retry_after or 0)
        assert self.now + floor <= rest <= self.now + max(self.policy.cooldown_cap, floor)
        assert rest > self.now
        assert not self.lifecycle.is_due(self.record, self.now)

    @rule(
        code=st.sampled_from(sorted(REAUTH_ERROR_CODES)),
        status=st.sampled_from([400, 401]),
    )
    def refresh_fails_for_good(self, code: str, status: int) -> None:
        err = classify_token_error(status, code)
        assert isinstance(err, ReauthorizationRequired)
        before = (self.record.failure_count, self.record.last_error)
        self.record.apply_reauthorization_required(err, now=self.now, ids=self.ids)
        if self.status != TokenStatus.ACTIVE:
            self._expect_events([])
            assert (self.record.failure_count, self.record.last_error) == before
            return
        self.status = TokenStatus.NEEDS_REAUTHENTICATION
        self.failures += 1
        if code in {"token_revoked", "access_denied"}:
            # a revoked grant gets one terminal event: no TOKEN_EXPIRED from a later sweep
            self.expiry_notified = True
            self._expect_events([TokenEventType.REVOKED])
        elif not self.expiry_notified:
            self.expiry_notified = True
            self._expect_events([TokenEventType.EXPIRED])
        else:
            self._expect_events([])
        assert self.record.last_error == err.message

    @rule()
    def pause(self) -> None:
        paused = self.record.follow_connector(False, lifecycle=self.lifecycle, now=self.now)
        assert paused is (self.status == TokenStatus.ACTIVE)
        if paused:
            self.status = TokenStatus.PAUSED
        self._expect_events([])

    @rule()
    def change_client(self) -> None:
        """The connector's OAuth client changed: a live token needs a new authorization."""
        changed = self.record.apply_client_change("client configuration changed", now=self.now, ids=self.ids)
        live = self.status in (TokenStatus.ACTIVE, TokenStatus.PAUSED)
        assert changed is live
        if not live:
            self._expect_events([])
            return
        self.status = TokenStatus.NEEDS_REAUTHENTICATION
        self._expect_events([] if self.expiry_notified else [TokenEventType.EXPIRED])
        self.expiry_notified = True
        assert not self.lifecycle.is_due(self.record, self.now)

    @rule()
    def resume(self) -> None:
        resumed = self.record.follow_connector(True, lifecycle=self.lifecycle, now=self.now)
        assert resumed is (self.status == TokenStatus.PAUSED)
        if resumed:
            self.status = TokenStatus.ACTIVE
            assert self.record.next_attempt_at is None
        self._expect_events([])

    @precondition(lambda self: self.status == TokenStatus.ACTIVE and self.record.tokens.can_refresh)
    @rule()
    def start_refresh(self) -> None:
        """A refresh takes the token as it is now and calls the provider (it finishes later)."""
        used = self.record.tokens.refresh_token
        assert used is not None
        self.in_flight.append(used)

    @precondition(lambda self: bool(self.in_flight))
    @rule(
        which=st.integers(0, 10),
        outcome=st.sampled_from(["success", "rotation", "retryable", "dead"]),
    )
    def finish_refresh(self, which: int, outcome: str) -> None:
        """A refresh started earlier finishes now, whatever happened to the token meanwhile."""
        used = self.in_flight.pop(which % len(self.in_flight))
        fate = self.lifecycle.fate_of_refresh(self.record, used)
        if self.status == TokenStatus.REVOKED:
            assert fate == RefreshFate.REVOKE
        elif self.record.tokens.refresh_token != used:
            assert fate == RefreshFate.DROP
        else:
            assert fate == RefreshFate.STORE
        if fate != RefreshFate.STORE:
            return  # the service never applies it: nothing changes
        status_before = self.status
        if outcome in ("success", "rotation"):
            self.serial += 1
            data: dict[str, Any] = {"access_token": f"AT-secret-{self.serial:04d}", "expires_in": 3600}
            if outcome == "rotation":
                data["refresh_token"] = f"RT-secret-{self.serial:04d}"
            self.secrets |= {v for v in data.values() if isinstance(v, str)}
            self.record.apply_refresh(
                self.record.tokens.refreshed(data, now=self.now), lifecycle=self.lifecycle, now=self.now, ids=self.ids
            )
            # the material is kept (the provider retired the old refresh token) ...
            assert self.record.tokens.access_token == data["access_token"]
            assert self.record.tokens.refresh_token == data.get("refresh_token", used)
            if status_before == TokenStatus.NEEDS_REAUTHENTICATION:
                self._expect_events([])  # ... the verdict stays, with its one terminal event
            else:
                self._reset_model()
                self.status = status_before  # ... and a pause a person set stays
                self._expect_events([TokenEventType.REFRESHED])
        elif outcome == "retryable":
            err = classify_token_error(503, None)
            assert isinstance(err, RetryableProviderError)
            self.record.apply_retryable_failure(err, lifecycle=self.lifecycle, now=self.now)
            self.failures += 1
            self._expect_events([])
        else:
            self.refresh_fails_for_good("invalid_grant", 400)
        assert self.record.status == status_before or (outcome == "dead" and status_before == TokenStatus.ACTIVE), (
            "a late refresh changed a status a person or the provider set"
        )

    @precondition(lambda self: self.status == TokenStatus.ACTIVE and self.record.tokens.can_refresh)
    @rule(
        by=st.sampled_from(
            ["pause", "client change", "provider refusal", "revocation", "re-authorization", "expiry", "nothing"]
        ),
        outcome=st.sampled_from(["success", "rotation", "retryable", "dead"]),
    )
    def refresh_overtaken(self, by: str, outcome: str) -> None:
        """A refresh starts, something happens to the token, then the refresh finishes."""
        self.start_refresh()
        meanwhile: dict[str, Callable[[], object]] = {
            "pause": self.pause,
            "client change": self.change_client,
            "provider refusal": lambda: self.refresh_fails_for_good("invalid_grant", 400),
            "revocation": self.revoke,
            "re-authorization": lambda: self.reauthorize(3600, True),
            "expiry": self.check_expiry,
            "nothing": lambda: None,
        }
        meanwhile[by]()
        self.finish_refresh(len(self.in_flight) - 1, outcome)

    @rule()
    def revoke(self) -> None:
        self.record.revoke(now=self.now, ids=self.ids)
        self.status = TokenStatus.REVOKED
        self._expect_events([TokenEventType.REVOKED])
        assert self.record.refresh_due_at is None

    @rule(lifetime_s=st.integers(60, 4 * 3600), refresh=st.booleans())
    def reauthorize(self, lifetime_s: int, refresh: bool) -> None:
        tokens = self._new_tokens(timedelta(seconds=lifetime_s), refresh=refresh)
        self.record.replace_tokens(tokens, lifecycle=self.lifecycle, now=self.now, ids=self.ids, account_id="acct-1")
        self._reset_model()
        self._expect_events([TokenEventType.CREATED])
        assert (self.record.refresh_due_at is None) is (not refresh)

    @invariant()
    def matches_model(self) -> None:
        record = self.record
        if self.status == TokenStatus.REVOKED:
            with pytest.raises(DomainRuleViolation):  # a revoked token takes no new material
                record.apply_refresh(record.tokens, lifecycle=self.lifecycle, now=self.now, ids=self.ids)
        assert record.status == self.status
        assert record.expiry_notified is self.expiry_notified
        assert record.failure_count == self.failures
        assert self.expired_this_life <= 1
        if self.status == TokenStatus.ACTIVE and self.failures == 0:
            assert record.next_attempt_at is None
            assert record.last_error is None
        if self.status != TokenStatus.ACTIVE:
            assert not self.lifecycle.is_due(record, self.now + timedelta(days=365))
        due = record.refresh_due_at
        if due is not None and self.status == TokenStatus.ACTIVE:
            assert record.tokens.expires_at is not None
            assert record.tokens.obtained_at < due < record.tokens.expires_at
        _assert_no_secret(self.secrets, record, record.tokens, record.last_error or "")


TokenRecordMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_token_record_machine = TokenRecordMachine.TestCase
