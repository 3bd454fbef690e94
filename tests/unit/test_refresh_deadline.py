"""The refresh-token deadline rule and its warnings (connector_core.tokens.refresh_deadline),
and how a token record keeps its lineage and announces TOKEN_EXPIRING."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector_core.catalog import load_default_catalog
from connector_core.errors import ValidationError
from connector_core.model.events import RefreshTokenExpiring
from connector_core.tokens import (
    WARN_BEFORE,
    ExpiryBasis,
    RefreshPolicy,
    RefreshTokenLimits,
    RefreshWarning,
    TokenLifecycle,
    TokenRecord,
    TokenSet,
    TokenStatus,
)
from connector_core.tokens.refresh_deadline import (
    crossed_thresholds,
    next_warning_at,
    refresh_deadline,
    warning_at,
)
from tests.builders import token_record
from tests.conftest import CountingIds, SeededRandom

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)

days = st.integers(min_value=1, max_value=400).map(lambda d: timedelta(days=d))
maybe_days = st.none() | days
offsets = st.integers(min_value=0, max_value=400 * 86400).map(lambda s: timedelta(seconds=s))
limits_st = st.builds(RefreshTokenLimits, max_idle=maybe_days, max_lifetime=maybe_days, testing_lifetime=maybe_days)


def lifecycle() -> TokenLifecycle:
    return TokenLifecycle(RefreshPolicy(), SeededRandom())


# -- the rule --------------------------------------------------------------------------------


@given(limits=limits_st, used=st.none() | offsets, reported=st.none() | offsets)
def test_the_deadline_is_the_earliest_limit(
    limits: RefreshTokenLimits, used: timedelta | None, reported: timedelta | None
) -> None:
    last_used = None if used is None else T0 + used
    said = None if reported is None else T0 + reported
    found = refresh_deadline(limits, started_at=T0, last_used_at=last_used, reported=said)
    candidates = [
        said,
        None if limits.testing_lifetime is None else T0 + limits.testing_lifetime,
        None if limits.max_lifetime is None else T0 + limits.max_lifetime,
        None if limits.max_idle is None else (last_used or T0) + limits.max_idle,
    ]
    known = [c for c in candidates if c is not None]
    if not known:
        assert found is None
    else:
        assert found is not None and found.at == min(known)


@given(limits=limits_st, first=offsets, later=offsets)
def test_using_a_refresh_token_never_brings_its_deadline_closer(
    limits: RefreshTokenLimits, first: timedelta, later: timedelta
) -> None:
    before = refresh_deadline(limits, started_at=T0, last_used_at=T0 + first, reported=None)
    after = refresh_deadline(limits, started_at=T0, last_used_at=T0 + first + later, reported=None)
    assert (before is None) == (after is None)
    if before is not None and after is not None:
        assert after.at >= before.at


@given(limits=limits_st, used=st.none() | offsets)
def test_testing_mode_never_moves_the_deadline_later(limits: RefreshTokenLimits, used: timedelta | None) -> None:
    last_used = None if used is None else T0 + used
    on = refresh_deadline(limits.applied(testing_mode=True), started_at=T0, last_used_at=last_used, reported=None)
    off = refresh_deadline(limits.applied(testing_mode=False), started_at=T0, last_used_at=last_used, reported=None)
    if off is not None:
        assert on is not None and on.at <= off.at


@given(deadline=offsets, a=offsets, b=offsets)
def test_a_warning_only_grows_as_time_passes(deadline: timedelta, a: timedelta, b: timedelta) -> None:
    order = [None, RefreshWarning.WITHIN_7_DAYS, RefreshWarning.WITHIN_1_DAY, RefreshWarning.EXPIRED]
    early, late = sorted([T0 + a, T0 + b])
    assert order.index(warning_at(T0 + deadline, early)) <= order.index(warning_at(T0 + deadline, late))
    assert (warning_at(T0 + deadline, late) == RefreshWarning.EXPIRED) == (T0 + deadline <= late)


@given(deadline=offsets, now=offsets, announced=st.sets(st.sampled_from(WARN_BEFORE)))
def test_the_next_warning_is_the_first_threshold_not_yet_announced(
    deadline: timedelta, now: timedelta, announced: set[timedelta]
) -> None:
    found = refresh_deadline(RefreshTokenLimits(), started_at=T0, last_used_at=None, reported=T0 + deadline)
    assert found is not None
    upcoming = next_warning_at(found, announced)
    waiting = [t for t in WARN_BEFORE if t not in announced]
    if not waiting:
        assert upcoming is None
    else:
        assert upcoming == found.at - max(waiting)
        # a threshold counts as reached from that moment on, not before
        reached = crossed_thresholds(found, T0 + now)
        assert (max(waiting) in reached) == (upcoming <= T0 + now)


def test_limits_from_the_catalog_refuse_nonsense() -> None:
    assert RefreshTokenLimits.from_dict({"maxIdleDays": 90}).max_idle == timedelta(days=90)
    for bad in ({"maxIdleDays": 0}, {"maxIdleDays": "90"}, {"maxLifetimeDays": True}, {"maxIdleDays": -1}):
        with pytest.raises(ValidationError):
            RefreshTokenLimits.from_dict(bad)


def test_the_catalog_knows_the_providers_limits() -> None:
    catalog = load_default_catalog()
    google = catalog.get("googleWorkspace")
    assert google.refresh_limits({}).max_idle == timedelta(days=180)
    assert google.refresh_limits({}).testing_lifetime is None
    assert google.refresh_limits({"testingMode": True}).testing_lifetime == timedelta(days=7)
    assert catalog.get("onedrive").refresh_limits({}).max_idle == timedelta(days=90)
    assert catalog.get("sharepointOnline").refresh_limits({}).max_idle == timedelta(days=90)
    assert catalog.get("jira").refresh_limits({}).max_lifetime == timedelta(days=365)
    custom = catalog.with_custom_providers(
        [{"key": "acme", "oauth": {"authorizeUrl": "https://a.example/a", "tokenUrl": "https://a.example/t"}}]
    )
    assert custom.get("acme").refresh_limits({}) == RefreshTokenLimits()


# -- the lineage on a token record -------------------------------------------------------------


def google(now: datetime, **extra: object) -> TokenRecord:
    return token_record("org-1", now, ids=CountingIds("e"), **extra)  # type: ignore[arg-type]


def expiring(record: TokenRecord) -> list[RefreshTokenExpiring]:
    return [e for e in record.pull_events() if isinstance(e, RefreshTokenExpiring)]


def test_an_authorization_begins_a_lineage_and_a_refresh_continues_it() -> None:
    record = google(T0)
    assert record.lineage_started_at == T0 and record.refresh_last_used_at is None
    later = T0 + 3 * DAY
    record.apply_refresh(
        record.tokens.refreshed({"access_token": "a2", "refresh_token": "r2", "expires_in": 3600}, now=later),
        lifecycle=lifecycle(),
        now=later,
        ids=CountingIds("x"),
    )
    assert record.lineage_started_at == T0 and record.refresh_last_used_at == later
    again = T0 + 5 * DAY
    record.replace_tokens(
        TokenSet(access_token="a3", obtained_at=again, refresh_token="r3"),
        lifecycle=lifecycle(),
        now=again,
        ids=CountingIds("y"),
    )
    assert record.lineage_started_at == again and record.refresh_last_used_at is None


def test_a_token_without_a_refresh_token_has_no_lineage() -> None:
    record = google(T0, refresh=None)
    assert record.lineage_started_at is None
    assert record.track_refresh_deadline(RefreshTokenLimits(max_idle=DAY)) is False
    assert record.refresh_deadline is None and record.refresh_warn_at is None


def test_google_testing_mode_warns_at_seven_days_then_at_one_day_once_each() -> None:
    limits = load_default_catalog().get("googleWorkspace").refresh_limits({"testingMode": True})
    record = google(T0)
    record.track_refresh_deadline(limits)
    assert record.refresh_deadline == T0 + 7 * DAY and record.refresh_warn_at == T0
    ids = CountingIds("w")
    assert record.announce_expiring(limits, now=T0, ids=ids)
    (first,) = expiring(record)
    assert first.event_type == "TOKEN_EXPIRING"
    assert (first.refresh_token_expires_at, first.expires_because) == (T0 + 7 * DAY, ExpiryBasis.TESTING_MODE)
    assert first.warn_before_seconds == 7 * 86400
    assert record.refresh_warn_at == T0 + 6 * DAY
    assert not record.announce_expiring(limits, now=T0 + 5 * DAY, ids=ids)  # nothing new reached
    assert record.announce_expiring(limits, now=T0 + 6 * DAY, ids=ids)
    (second,) = expiring(record)
    assert second.warn_before_seconds == 86400
    assert record.refresh_warn_at is None
    for day in (6.5, 7, 30):  # even past the deadline: each threshold went out once
        assert not record.announce_expiring(limits, now=T0 + day * DAY, ids=ids)
    assert expiring(record) == []


def test_a_late_sweep_announces_only_the_tightest_threshold_reached() -> None:
    limits = RefreshTokenLimits(max_idle=timedelta(days=90))
    record = google(T0)
    assert record.announce_expiring(limits, now=T0 + 89.5 * DAY, ids=CountingIds("w"))
    (only,) = expiring(record)
    assert only.warn_before_seconds == 86400 and only.expires_because == ExpiryBasis.INACTIVITY
    assert not record.announce_expiring(limits, now=T0 + 89.9 * DAY, ids=CountingIds("w"))


def test_a_new_lineage_warns_again() -> None:
    limits = RefreshTokenLimits(testing_lifetime=timedelta(days=7))
    record = google(T0)
    assert record.announce_expiring(limits, now=T0, ids=CountingIds("w"))
    later = T0 + 8 * DAY
    record.replace_tokens(
        TokenSet(access_token="a", obtained_at=later, refresh_token="r"),
        lifecycle=lifecycle(),
        now=later,
        ids=CountingIds(),
    )
    record.pull_events()
    assert record.announce_expiring(limits, now=later, ids=CountingIds("w"))
    assert [e.warn_before_seconds for e in expiring(record)] == [7 * 86400]


@pytest.mark.parametrize("status", [TokenStatus.NEEDS_REAUTHENTICATION, TokenStatus.REVOKED])
def test_a_dead_token_does_not_warn(status: TokenStatus) -> None:
    limits = RefreshTokenLimits(testing_lifetime=timedelta(days=7))
    record = google(T0)
    record.status = status
    assert not record.announce_expiring(limits, now=T0 + 6.5 * DAY, ids=CountingIds("w"))


def test_a_paused_token_warns_it_will_die_unused() -> None:
    limits = RefreshTokenLimits(max_idle=timedelta(days=90))
    record = google(T0)
    record.pause(now=T0)
    assert record.announce_expiring(limits, now=T0 + 85 * DAY, ids=CountingIds("w"))


def test_the_provider_word_counts_for_custom_providers() -> None:
    tokens = TokenSet.from_token_response(
        {"access_token": "a", "refresh_token": "r", "expires_in": 60, "refresh_expires_in": 3 * 86400}, now=T0
    )
    record = TokenRecord.create(
        token_id="t",
        org_id="o",
        connector_key="acme",
        account_id="u",
        service_type="ACME",
        tokens=tokens,
        lifecycle=lifecycle(),
        now=T0,
        ids=CountingIds(),
    )
    found = record.deadline_under(RefreshTokenLimits())
    assert found is not None and (found.at, found.basis) == (T0 + 3 * DAY, ExpiryBasis.PROVIDER)
    # a rotation that says nothing of the new token's life keeps the old word only for the old token
    rotated = record.tokens.refreshed({"access_token": "a2", "refresh_token": "r2"}, now=T0 + DAY)
    assert rotated.refresh_token_expires_at is None
