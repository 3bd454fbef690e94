"""Round trips of every converter: what is stored (as JSON text, the strictest of the stores)
reads back equal, and settings read the same from a TOML file as from the environment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.codec import (
    connector_from_doc,
    connector_to_doc,
    event_from_doc,
    event_to_doc,
    make_json_converter,
    pending_from_doc,
    pending_to_doc,
)
from connector_core.errors import ValidationError
from connector_core.model.connector import AuthState, AuthStatus, Connector, ConnectorConfig
from connector_core.model.events import (
    AppDisabled,
    AppEnabled,
    AuthStatusChanged,
    ConnectorConfigured,
    DomainEvent,
    FiltersSaved,
    RealTimeUpdatesChanged,
    RefreshTokenExpiring,
    TokenEvent,
    TokenEventType,
)
from connector_core.ports.oauth_state import PendingAuthorization
from connector_core.tokens import RefreshTokenLimits, TokenRecord, TokenSet, TokenStatus
from entrypoints.setting_values import make_settings_converter
from entrypoints.settings import Settings, SettingsError, structure_settings
from tests.builders import token_record

CONV = make_json_converter()

moments = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)
maybe_moment = st.none() | moments
words = st.text(max_size=12)
maybe_word = st.none() | words
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(words, json_values, max_size=4)
names = st.lists(words, max_size=4).map(tuple)

token_sets = st.builds(
    TokenSet,
    access_token=words,
    obtained_at=moments,
    token_type=words,
    refresh_token=maybe_word,
    expires_at=maybe_moment,
    refresh_token_expires_at=maybe_moment,
    scopes=st.frozensets(words, max_size=4),
    id_token=maybe_word,
)
token_records = st.builds(
    TokenRecord,
    id=words,
    org_id=words,
    connector_key=words,
    account_id=words,
    service_type=words,
    tokens=token_sets,
    status=st.sampled_from(TokenStatus),
    refresh_due_at=maybe_moment,
    created_at=moments,
    updated_at=moments,
    next_attempt_at=maybe_moment,
    failure_count=st.integers(min_value=0),
    last_error=maybe_word,
    expiry_notified=st.booleans(),
    lineage_started_at=maybe_moment,
    refresh_last_used_at=maybe_moment,
    refresh_deadline=maybe_moment,
    refresh_warn_at=maybe_moment,
    expiring_announced=st.lists(st.integers(min_value=1, max_value=10**7), max_size=3).map(tuple),
    version=st.integers(min_value=0),
)
connectors = st.builds(
    Connector,
    id=words,
    org_id=words,
    key=words,
    display_name=words,
    app_group=words,
    auth_type=words,
    is_enabled=st.booleans(),
    auth_status=st.builds(AuthStatus, state=st.sampled_from(AuthState), reason=maybe_word, changed_at=maybe_moment),
    enabled_apps=names,
    config=st.builds(
        ConnectorConfig,
        auth=json_objects,
        sync=json_objects,
        filters=json_objects,
        base_url=maybe_word,
        secrets_set=st.frozensets(words, max_size=3),
    ),
    filter_selection=json_objects,
    last_updated_by=maybe_word,
    created_at=moments,
    updated_at=moments,
    version=st.integers(min_value=0),
)
pendings = st.builds(
    PendingAuthorization,
    state_hash=words,
    org_id=words,
    user_id=words,
    connector_key=words,
    redirect_uri=words,
    expires_at=moments,
    code_verifier=maybe_word,
    nonce=maybe_word,
    scopes=names,
)
_base = {"event_id": words, "occurred_at": moments, "org_id": words, "connector_key": words}
events: st.SearchStrategy[DomainEvent] = st.one_of(
    st.builds(AppEnabled, **_base, credentials_route=maybe_word, refresh_token_route=maybe_word),
    st.builds(AppDisabled, **_base),
    st.builds(ConnectorConfigured, **_base),
    st.builds(FiltersSaved, **_base),
    st.builds(AuthStatusChanged, **_base, reason=maybe_word),
    st.builds(
        TokenEvent,
        **_base,
        token_event_type=st.sampled_from([t for t in TokenEventType if t != TokenEventType.EXPIRING]),
    ),
    st.builds(
        RefreshTokenExpiring,
        **_base,
        refresh_token_expires_at=moments,
        expires_because=words,
        warn_before_seconds=st.integers(min_value=1, max_value=10**7),
    ),
    st.builds(RealTimeUpdatesChanged, **_base),
)


def stored(doc: dict[str, Any]) -> Any:
    """What a store gives back: the document through JSON text."""
    return json.loads(json.dumps(doc))


@given(connectors)
def test_a_connector_reads_back_equal(connector: Connector) -> None:
    assert connector_from_doc(CONV, stored(connector_to_doc(CONV, connector))) == connector


@given(token_records)
def test_a_token_record_reads_back_equal(record: TokenRecord) -> None:
    assert CONV.structure(stored(CONV.unstructure(record)), TokenRecord) == record


def test_a_token_record_stored_before_lineages_were_kept_reads_back() -> None:
    record = token_record("org", datetime(2025, 1, 1, tzinfo=UTC))
    doc = stored(CONV.unstructure(record))
    for name in (
        "lineage_started_at",
        "refresh_last_used_at",
        "refresh_deadline",
        "refresh_warn_at",
        "expiring_announced",
    ):
        del doc[name]
    old = CONV.structure(doc, TokenRecord)
    assert old.lineage_started_at is None and old.expiring_announced == ()
    # its first tracking dates the lineage from the record's creation (the earliest it can have begun)
    assert old.track_refresh_deadline(RefreshTokenLimits(max_idle=timedelta(days=90)))
    assert old.refresh_deadline == record.created_at + timedelta(days=90)


@given(pendings)
def test_a_pending_authorization_reads_back_equal(pending: PendingAuthorization) -> None:
    assert pending_from_doc(CONV, stored(pending_to_doc(CONV, pending))) == pending


@given(events)
def test_every_event_reads_back_as_itself(event: DomainEvent) -> None:
    doc = stored(event_to_doc(CONV, event))
    assert doc["event_type"] == event.event_type
    back = event_from_doc(CONV, doc)
    assert type(back) is type(event)
    assert back == event


@pytest.mark.parametrize("doc", [{"event_type": "somethingNew"}, {"event_type": "appEnabled"}, {}])
def test_an_event_we_did_not_write_is_a_validation_error(doc: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="stored event"):
        event_from_doc(CONV, doc)


# -- settings -------------------------------------------------------------------------------

plain = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-./:", min_size=1, max_size=12)
#: a host name (a "/" or "@" would make it a URL or carry user info: refused, tested elsewhere)
host = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12)
raw_settings = st.fixed_dictionaries(
    {},
    optional={
        "storage": st.sampled_from(["sqlite", "memory", "mongo"]),
        "locks": st.sampled_from(["local", "redis", "etcd"]),
        "port": st.integers(min_value=1, max_value=65535),
        "run_refresher": st.booleans(),
        "refresh_batch_size": st.integers(min_value=1, max_value=10**6),
        "refresh_margin_seconds": st.integers(min_value=0, max_value=10**6),
        "mongo_timeout_seconds": st.floats(min_value=0.001, max_value=1e6),
        "oauth_allowed_origins": st.lists(plain, max_size=3).map(tuple),
        "kafka_client_config": st.dictionaries(plain, plain, max_size=3),
        "etcd_endpoint": st.builds(lambda h, p: f"{h}:{p}", host, st.integers(min_value=1, max_value=65535)),
        "public_url": plain,
        "data_dir": plain,
    },
)


def as_environment(value: Any) -> str:
    """How an operator writes ``value`` in a ``CM_*`` variable."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


@given(raw_settings)
def test_settings_read_the_same_from_a_file_and_from_the_environment(raw: dict[str, Any]) -> None:
    from_file = structure_settings(raw)
    assert structure_settings({k: as_environment(v) for k, v in raw.items()}) == from_file


@given(raw_settings)
def test_settings_read_back_equal(raw: dict[str, Any]) -> None:
    settings = structure_settings(raw)
    assert structure_settings(make_settings_converter().unstructure(settings)) == settings
    assert structure_settings({}, base=settings) == settings


@given(
    st.sampled_from(["refresh_batch_size", "refresh_concurrency", "oauth_state_ttl_seconds"]),
    st.integers(max_value=0),
)
def test_a_count_below_one_is_refused_by_name(name: str, value: int) -> None:
    with pytest.raises(SettingsError) as refused:
        structure_settings({name: value})
    assert refused.value.errors == [{"path": name, "message": f"must be at least 1, got {value}"}]


def test_the_defaults_are_valid() -> None:
    assert structure_settings({}) == Settings()
