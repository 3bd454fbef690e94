"""The Connector aggregate: a stateful model test over one connector per catalog entry, and
examples for the specific refusals and their messages."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from attrs import define, field
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from adapters.system import ManualClock
from connector_core.catalog import CatalogEntry, load_default_catalog
from connector_core.errors import ConnectorManagerError, DomainRuleViolation, NotConfigured
from connector_core.model.connector import AuthState, Connector, ConnectorConfig, EventRoutes
from connector_core.model.events import (
    ENTITY_TOPIC,
    AppDisabled,
    AppEnabled,
    AuthStatusChanged,
    ConnectorConfigured,
    DomainEvent,
    FiltersSaved,
    RealTimeUpdatesChanged,
    SyncAction,
)
from connector_core.scopes import ScopeMapper
from connector_core.services.connectors import validate_filter_selection
from tests.builders import api_token_connector
from tests.conftest import CountingIds

CATALOG = load_default_catalog()
KEYS = tuple(CATALOG.keys)
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
#: the kind of error a refused command raises
Refusal = TypeVar("Refusal", bound=ConnectorManagerError)
ORG = "org-1"
OAUTH = "OAUTH"
AUTHORIZATION = "authorization (complete the OAuth flow)"

SYNC_ACTIONS = st.sampled_from(list(SyncAction))
USERS = st.sampled_from(["u1", "u2", None])
ROUTES = st.sampled_from([None, EventRoutes(credentials_route="/creds", refresh_token_route="/refresh")])
REASONS = st.sampled_from(["refresh failed", "grant revoked", "consent withdrawn"])
SYNC_CONFIGS: tuple[dict[str, Any], ...] = (
    {},
    {"schedule": "daily"},
    {"schedule": "hourly", "batchSize": 100},
)

assert {"googleWorkspace", "confluence", "onedrive"} <= set(KEYS)


# -- an independent statement of the rules ------------------------------------------------------


def present(config: ConnectorConfig, path: str) -> bool:
    """Whether ``path`` counts as set: a stored secret, a non-empty baseUrl or a non-empty
    value in the auth/sync/filters section."""
    if path in config.secrets_set:
        return True
    if path == "baseUrl":
        return bool(config.base_url)
    section, _, name = path.partition(".")
    value = {"auth": config.auth, "sync": config.sync, "filters": config.filters}[section].get(name)
    return value is not None and value != ""


def missing_paths(entry: CatalogEntry, auth_type: str, config: ConnectorConfig) -> list[str]:
    return [p for p in entry.requirements_for(auth_type) if not present(config, p)]


def changed_paths(old: ConnectorConfig, new: ConnectorConfig) -> set[str]:
    changed = set()
    for section in ("auth", "sync", "filters"):
        a: Mapping[str, Any] = getattr(old, section)
        b: Mapping[str, Any] = getattr(new, section)
        for name in set(a) | set(b):
            if a.get(name) != b.get(name):
                changed.add(f"{section}.{name}")
    if old.base_url != new.base_url:
        changed.add("baseUrl")
    return changed | (set(old.secrets_set) ^ set(new.secrets_set))


def real_time_of(config: ConnectorConfig) -> tuple[bool, str]:
    """Real-time updates as the model sees them: on only when the flag is true; no topic when off."""
    on = config.auth.get("enableRealTimeUpdates") is True
    return on, (str(config.auth.get("topicName") or "") if on else "")


def auth_properties(entry: CatalogEntry) -> dict[str, Mapping[str, Any]]:
    """Non-secret auth properties of the entry's schema, except authType."""
    props = entry.config_schema["properties"]["auth"]["properties"]
    return {
        name: sub for name, sub in props.items() if name != "authType" and f"auth.{name}" not in entry.secret_fields
    }


def string_value(entry_key: str, name: str, i: int) -> str:
    return f"val-{entry_key}-{name}-{i}"


@define
class Model:
    """What the connector should look like."""

    enabled: bool = False
    apps: tuple[str, ...] = ()
    auth_type: str = OAUTH
    state: AuthState = AuthState.NOT_CONFIGURED
    reason: str | None = "configuration missing"
    config: ConnectorConfig = field(factory=ConnectorConfig)
    filters: dict[str, Any] = field(factory=dict)
    last_by: str | None = None
    updated_at: datetime = T0


@st.composite
def configs(draw: st.DrawFn, entry: CatalogEntry, current: ConnectorConfig) -> tuple[ConnectorConfig, list[str]]:
    """A new configuration for ``entry`` and the secrets given a new value."""
    if draw(st.integers(0, 5)) == 0:
        new = current  # same configuration; maybe a secret re-entered with a new value
    else:
        auth_type = draw(st.sampled_from([None, *entry.auth_types, *entry.auth_types, "BOGUS"]))
        effective = auth_type or entry.default_auth_type
        complete = draw(st.booleans())
        required = set(entry.requirements_for(effective)) if complete else set()
        auth: dict[str, Any] = {}
        if auth_type is not None:
            auth["authType"] = auth_type
        for name, sub in auth_properties(entry).items():
            path = f"auth.{name}"
            choice: bool | str | None
            if sub.get("type") == "boolean":
                choice = draw(st.sampled_from([None, True, False]))
            elif path in required:
                choice = string_value(entry.key, name, draw(st.integers(1, 2)))
            else:
                choice = draw(
                    st.sampled_from([None, "", string_value(entry.key, name, 1), string_value(entry.key, name, 2)])
                )
            if choice is not None:
                auth[name] = choice
        secrets = {path for path in entry.secret_fields if path in required or draw(st.integers(0, 2)) > 0}
        if "baseUrl" in required or draw(st.integers(0, 3)) > 0:
            base_url: str | None = f"https://val-{entry.key}-base-{draw(st.integers(1, 2))}.example"
        else:
            base_url = draw(st.sampled_from([None, ""]))
        new = ConnectorConfig(
            auth=auth,
            sync=draw(st.sampled_from(SYNC_CONFIGS)),
            filters={},
            base_url=base_url,
            secrets_set=secrets,
        )
    changed_secrets = draw(st.lists(st.sampled_from(sorted(new.secrets_set)), unique=True)) if (new.secrets_set) else []
    return new, changed_secrets


@st.composite
def filter_selections(draw: st.DrawFn, entry: CatalogEntry) -> dict[str, Any]:
    selection: dict[str, Any] = {}
    for definition in entry.filters:
        if not draw(st.booleans()):
            continue
        if definition.type == "multiselect":
            value: Any = draw(st.lists(st.sampled_from(definition.options), unique=True, max_size=2))
        elif definition.type == "list":
            value = draw(st.lists(st.sampled_from(["a", "b"]), max_size=2))
        elif definition.type == "date":
            value = draw(st.sampled_from(["2025-01-01", "2025-06-30"]))
        elif definition.type == "boolean":
            value = draw(st.booleans())
        else:
            value = draw(st.sampled_from(["x", "y"]))
        selection[definition.key] = value
    return selection


# -- the state machine --------------------------------------------------------------------------


class ConnectorMachine(RuleBasedStateMachine):
    """One connector per catalog entry, driven by random commands; after every step the
    connector must match the model and its events must describe exactly what changed."""

    def __init__(self) -> None:
        super().__init__()
        self.ids = CountingIds("ev")
        self.clock = ManualClock(T0)
        self.connectors: dict[str, Connector] = {}
        self.models: dict[str, Model] = {}
        self.event_ids: set[str] = set()
        #: Every configuration value handed to a connector, and the secret values the
        #: application would have stored for the secret fields (never given to the aggregate).
        self.values: set[str] = set()
        self.secret_values: set[str] = set()
        for entry in CATALOG:
            connector = Connector.create(entry, org_id=ORG, connector_id=f"conn-{entry.key}", now=T0, by="creator")
            assert connector.pull_events() == []
            assert connector.is_new and not connector.is_enabled
            self.connectors[entry.key] = connector
            self.models[entry.key] = Model(auth_type=entry.default_auth_type, last_by="creator")

    # helpers ------------------------------------------------------------------------------

    def _tick(self) -> datetime:
        self.clock.advance(1)
        return self.clock.now()

    def _changed(self, key: str, by: str | None) -> None:
        model = self.models[key]
        model.updated_at = self.clock.now()
        if by is not None:
            model.last_by = by

    def _expect_events(self, key: str, expected: list[tuple[type[DomainEvent], dict[str, Any]]]) -> list[DomainEvent]:
        connector = self.connectors[key]
        events = connector.pull_events()
        assert [type(e) for e in events] == [cls for cls, _ in expected], events
        for event, (_, attributes) in zip(events, expected, strict=True):
            assert event.org_id == ORG
            assert event.connector_key == key
            assert event.occurred_at == self.clock.now()
            assert event.topic == ENTITY_TOPIC
            assert event.partition_key == f"{ORG}:{key}"
            assert event.event_id not in self.event_ids
            self.event_ids.add(event.event_id)
            for name, value in attributes.items():
                assert getattr(event, name) == value, (name, event)
            text = repr(event)
            # configuration values stay out of events, except the topic real-time updates go to
            announced = {event.topic_name} if isinstance(event, RealTimeUpdatesChanged) else set()
            for value in (self.values - announced) | self.secret_values:
                assert value not in text, f"value {value!r} leaked into {text}"
        return events

    def _refused(self, key: str, error: type[Refusal], command: Any) -> pytest.ExceptionInfo[Refusal]:
        connector = self.connectors[key]
        before = connector.snapshot()
        with pytest.raises(error) as info:
            command()
        assert type(info.value) is error
        assert connector == before
        self._expect_events(key, [])
        return info

    def _no_op(self, key: str, command: Any) -> None:
        connector = self.connectors[key]
        before = connector.snapshot()
        command()
        assert connector == before
        self._expect_events(key, [])

    def _auth_event(self, key: str, state: AuthState, reason: str | None) -> list[Any]:
        """Set the model's auth status; the expected event, if it changed."""
        model = self.models[key]
        if (model.state, model.reason) == (state, reason):
            return []
        model.state, model.reason = state, reason
        return [(AuthStatusChanged, {"status": str(state), "reason": reason})]

    def _enabled_event(
        self, key: str, sync_action: SyncAction, routes: EventRoutes | None
    ) -> tuple[type[DomainEvent], dict[str, Any]]:
        entry = CATALOG.get(key)
        routes = routes or EventRoutes()
        return (
            AppEnabled,
            {
                "apps": self.models[key].apps,
                "sync_action": sync_action,
                "app_group": entry.app_group,
                "app_group_id": f"conn-{key}",
                "credentials_route": routes.credentials_route,
                "refresh_token_route": routes.refresh_token_route,
                "event_type": "appEnabled",
            },
        )

    def _disabled_event(self, key: str) -> tuple[type[DomainEvent], dict[str, Any]]:
        return (
            AppDisabled,
            {
                "apps": self.models[key].apps,
                "app_group": CATALOG.get(key).app_group,
                "app_group_id": f"conn-{key}",
                "event_type": "appDisabled",
            },
        )

    def _oauth_ready(self) -> list[str]:
        return [
            key
            for key, model in self.models.items()
            if model.auth_type == OAUTH and not missing_paths(CATALOG.get(key), OAUTH, model.config)
        ]

    # commands -----------------------------------------------------------------------------

    def _do_enable(
        self,
        key: str,
        sync_action: SyncAction,
        by: str | None,
        routes: EventRoutes | None,
        *,
        toggle: bool = False,
    ) -> None:
        entry = CATALOG.get(key)
        connector, model = self.connectors[key], self.models[key]
        now = self._tick()

        def command() -> None:
            if toggle:
                connector.toggle(entry, by=by, now=now, ids=self.ids, sync_action=sync_action, routes=routes)
            else:
                connector.enable(entry, sync_action=sync_action, by=by, now=now, ids=self.ids, routes=routes)

        if model.enabled:
            self._no_op(key, command)
            return
        missing = missing_paths(entry, model.auth_type, model.config)
        if not missing and model.auth_type == OAUTH and model.state != AuthState.AUTHENTICATED:
            missing.append(AUTHORIZATION)
        if missing:
            info = self._refused(key, NotConfigured, command)
            assert info.value.metadata == {"connector": key, "missing": missing}
            assert info.value.message.startswith(f"{entry.display_name} cannot be enabled")
            for path in missing:
                assert path in info.value.message
            return
        if model.auth_type != OAUTH:
            model.apps = entry.apps
        model.enabled = True
        command()
        self._changed(key, by)
        self._expect_events(key, [self._enabled_event(key, sync_action, routes)])

    def _do_disable(self, key: str, by: str | None, *, toggle: SyncAction | None = None) -> None:
        connector, model = self.connectors[key], self.models[key]
        now = self._tick()

        def command() -> None:
            if toggle is not None:
                connector.toggle(CATALOG.get(key), by=by, now=now, ids=self.ids, sync_action=toggle)
            else:
                connector.disable(by=by, now=now, ids=self.ids)

        if not model.enabled:
            self._no_op(key, command)
            return
        command()
        model.enabled = False
        self._changed(key, by)
        self._expect_events(key, [self._disabled_event(key)])

    @rule(key=st.sampled_from(KEYS), sync_action=SYNC_ACTIONS, by=USERS, routes=ROUTES)
    def enable(self, key: str, sync_action: SyncAction, by: str | None, routes: EventRoutes | None) -> None:
        self._do_enable(key, sync_action, by, routes)

    @rule(key=st.sampled_from(KEYS), by=USERS)
    def disable(self, key: str, by: str | None) -> None:
        self._do_disable(key, by)

    @rule(key=st.sampled_from(KEYS), sync_action=SYNC_ACTIONS, by=USERS, routes=ROUTES)
    def toggle(self, key: str, sync_action: SyncAction, by: str | None, routes: EventRoutes | None) -> None:
        if self.models[key].enabled:
            self._do_disable(key, by, toggle=sync_action)
        else:
            self._do_enable(key, sync_action, by, routes, toggle=True)

    @rule(key=st.sampled_from(KEYS), by=USERS, data=st.data())
    def update_configuration(self, key: str, by: str | None, data: st.DataObject) -> None:
        entry = CATALOG.get(key)
        connector, model = self.connectors[key], self.models[key]
        new, changed_secrets = data.draw(configs(entry, model.config), label="config")
        for section in (new.auth, new.sync):
            self.values |= {v for v in section.values() if isinstance(v, str) and len(v) > 3}
        if new.base_url:
            self.values.add(new.base_url)
        self.secret_values |= {f"secret-value-of-{p}-{self.ids.new_id()}" for p in changed_secrets}
        now = self._tick()

        def command() -> None:
            connector.update_configuration(entry, new, by=by, now=now, ids=self.ids, changed_secrets=changed_secrets)

        # a configuration that names no auth type keeps the connector's
        auth_type = new.auth.get("authType") or model.auth_type
        if auth_type not in entry.auth_types:
            info = self._refused(key, DomainRuleViolation, command)
            assert repr(auth_type) in info.value.message
            return
        changed = changed_paths(model.config, new) | set(changed_secrets)
        if auth_type != model.auth_type:
            changed.add("auth.authType")
        if not changed:
            self._no_op(key, command)
            return
        missing = missing_paths(entry, auth_type, new)
        if model.enabled and missing:
            info = self._refused(key, NotConfigured, command)
            assert info.value.metadata == {"connector": key, "missing": missing}
            assert "disable the connector first" in info.value.message
            for path in missing:
                assert path in info.value.message
            return
        command()
        not_the_client = {"auth.enableRealTimeUpdates", "auth.topicName", "auth.authType"}
        client_changed = auth_type != model.auth_type or any(
            p.startswith("auth.") and p not in not_the_client | entry.other_auth_types_fields(auth_type)
            for p in changed
        )
        real_time_before, real_time = real_time_of(model.config), real_time_of(new)
        model.config = new
        model.auth_type = auth_type
        self._changed(key, by)
        expected: list[Any] = [(ConnectorConfigured, {"changed_fields": tuple(sorted(changed))})]
        if real_time != real_time_before:
            expected.append((RealTimeUpdatesChanged, {"enabled": real_time[0], "topic_name": real_time[1]}))
        if missing:
            expected += self._auth_event(key, AuthState.NOT_CONFIGURED, "configuration missing")
        elif auth_type != OAUTH:
            expected += self._auth_event(key, AuthState.AUTHENTICATED, None)
        elif model.state == AuthState.NOT_CONFIGURED:
            expected += self._auth_event(key, AuthState.NOT_AUTHENTICATED, "authorization pending")
        elif client_changed and model.state == AuthState.AUTHENTICATED:
            expected += self._auth_event(key, AuthState.NEEDS_REAUTHENTICATION, "client configuration changed")
        self._expect_events(key, expected)

    @rule(key=st.sampled_from(KEYS), by=USERS, data=st.data())
    def save_filters(self, key: str, by: str | None, data: st.DataObject) -> None:
        entry = CATALOG.get(key)
        connector, model = self.connectors[key], self.models[key]
        selection = data.draw(filter_selections(entry), label="selection")
        assert validate_filter_selection(entry, selection) == selection
        now = self._tick()

        def command() -> None:
            connector.save_filters(selection, by=by, now=now, ids=self.ids)

        if selection == model.filters:
            self._no_op(key, command)
            return
        command()
        model.filters = dict(selection)
        self._changed(key, by)
        self._expect_events(key, [(FiltersSaved, {"filter_keys": tuple(sorted(selection))})])

    @precondition(lambda self: bool(self._oauth_ready()))
    @rule(data=st.data(), sync_action=SYNC_ACTIONS, by=USERS, routes=ROUTES)
    def record_authorization(
        self,
        data: st.DataObject,
        sync_action: SyncAction,
        by: str | None,
        routes: EventRoutes | None,
    ) -> None:
        key = data.draw(st.sampled_from(self._oauth_ready()), label="key")
        entry = CATALOG.get(key)
        assert entry.oauth is not None
        connector, model = self.connectors[key], self.models[key]
        known = sorted(entry.oauth.scope_apps)
        scopes = data.draw(
            st.lists(st.sampled_from([*known, "openid", "offline_access", "x:unknown"]), max_size=4),
            label="scopes",
        )
        apps = ScopeMapper(entry).apps_for(scopes)
        now = self._tick()

        def command() -> None:
            connector.record_authorization(
                entry, apps, by=by, now=now, ids=self.ids, sync_action=sync_action, routes=routes
            )

        if not apps:
            self._refused(key, DomainRuleViolation, command)
            return
        command()
        expected = self._auth_event(key, AuthState.AUTHENTICATED, None)
        model.apps = apps
        model.enabled = True
        self._changed(key, by)
        expected.append(self._enabled_event(key, sync_action, routes))
        self._expect_events(key, expected)

    @rule(key=st.sampled_from(KEYS), reason=REASONS)
    def mark_needs_reauthentication(self, key: str, reason: str) -> None:
        connector = self.connectors[key]
        now = self._tick()

        def command() -> None:
            connector.mark_needs_reauthentication(reason, now=now, ids=self.ids)

        expected = self._auth_event(key, AuthState.NEEDS_REAUTHENTICATION, reason)
        if not expected:
            self._no_op(key, command)
            return
        command()
        self.models[key].updated_at = now
        self._expect_events(key, expected)

    @rule(key=st.sampled_from(KEYS), reason=REASONS, by=USERS)
    def mark_not_authenticated(self, key: str, reason: str, by: str | None) -> None:
        connector, model = self.connectors[key], self.models[key]
        now = self._tick()

        def command() -> None:
            connector.mark_not_authenticated(reason, now=now, ids=self.ids, by=by)

        expected = self._auth_event(key, AuthState.NOT_AUTHENTICATED, reason)
        if expected:
            model.updated_at = now
        if model.auth_type == OAUTH and model.enabled:
            expected.append(self._disabled_event(key))
            model.enabled = False
            self._changed(key, by)
        if not expected:
            self._no_op(key, command)
            return
        command()
        self._expect_events(key, expected)

    # invariants ---------------------------------------------------------------------------

    @invariant()
    def connectors_match_the_model(self) -> None:
        for key, connector in self.connectors.items():
            model = self.models[key]
            entry = CATALOG.get(key)
            assert connector.events == []
            assert connector.is_enabled is model.enabled, key
            assert connector.enabled_apps == model.apps, key
            assert connector.auth_type == model.auth_type, key
            assert connector.auth_status.state == model.state, key
            assert connector.auth_status.reason == model.reason, key
            assert connector.config == model.config, key
            assert dict(connector.filter_selection) == model.filters, key
            assert connector.last_updated_by == model.last_by, key
            assert connector.updated_at == model.updated_at, key
            assert connector.id == f"conn-{key}"
            assert connector.created_at == T0

            # Invariants of the aggregate itself.
            assert connector.auth_type in entry.auth_types
            assert set(connector.enabled_apps) <= set(entry.apps)
            assert list(connector.enabled_apps) == [a for a in entry.apps if a in connector.enabled_apps]
            if connector.is_enabled:
                assert missing_paths(entry, connector.auth_type, connector.config) == [], key
                assert connector.enabled_apps, key
            expected_missing = missing_paths(entry, model.auth_type, model.config)
            if not expected_missing and model.auth_type == OAUTH and model.state != AuthState.AUTHENTICATED:
                expected_missing.append(AUTHORIZATION)
            assert connector.missing_requirements(entry) == expected_missing
            text = repr(connector)
            for value in self.secret_values:
                assert value not in text


ConnectorMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_connector_machine = ConnectorMachine.TestCase


# -- examples -----------------------------------------------------------------------------------


@pytest.fixture
def ids() -> CountingIds:
    return CountingIds("ev")


def _new(key: str, ids: CountingIds) -> tuple[CatalogEntry, Connector]:
    entry = CATALOG.get(key)
    return entry, Connector.create(entry, org_id=ORG, connector_id=f"conn-{key}", now=T0, by="u1")


def _configure(
    entry: CatalogEntry,
    connector: Connector,
    ids: CountingIds,
    *,
    auth: dict[str, Any],
    secrets: set[str],
    base_url: str | None = "https://example.com",
    now: datetime = T0,
    changed_secrets: set[str] | None = None,
) -> list[DomainEvent]:
    connector.update_configuration(
        entry,
        ConnectorConfig(auth=auth, base_url=base_url, secrets_set=secrets),
        by="u1",
        now=now,
        ids=ids,
        changed_secrets=secrets if changed_secrets is None else changed_secrets,
    )
    return connector.pull_events()


def test_a_new_connector_is_disabled_unconfigured_and_quiet(ids: CountingIds) -> None:
    entry, connector = _new("googleWorkspace", ids)
    assert not connector.is_enabled
    assert connector.is_new and connector.version == 0
    assert connector.auth_type == "OAUTH"
    assert connector.auth_status.state == AuthState.NOT_CONFIGURED
    assert connector.enabled_apps == ()
    assert connector.pull_events() == []
    assert connector.missing_requirements(entry) == ["auth.clientId", "auth.clientSecret"]


@pytest.mark.parametrize(
    ("key", "missing"),
    [
        ("googleWorkspace", ["auth.clientId", "auth.clientSecret"]),
        ("onedrive", ["auth.clientId", "auth.clientSecret", "auth.tenantId"]),
        (
            "sharepointOnline",
            ["auth.clientId", "auth.clientSecret", "auth.tenantId", "auth.sharepointDomain"],
        ),
        ("confluence", ["auth.clientId", "auth.clientSecret"]),
    ],
)
def test_enabling_an_unconfigured_connector_names_the_missing_fields(
    key: str, missing: list[str], ids: CountingIds
) -> None:
    entry, connector = _new(key, ids)
    with pytest.raises(NotConfigured) as info:
        connector.enable(entry, sync_action=SyncAction.IMMEDIATE, by="u1", now=T0, ids=ids)
    err = info.value
    assert err.message == f"{entry.display_name} cannot be enabled: missing {', '.join(missing)}"
    assert err.metadata == {"connector": key, "missing": missing}
    assert err.code == "CONNECTOR_NOT_CONFIGURED"
    assert not connector.is_enabled
    assert connector.pull_events() == []


def test_enabling_names_only_what_is_still_missing(ids: CountingIds) -> None:
    entry, connector = _new("onedrive", ids)
    _configure(entry, connector, ids, auth={"clientId": "cid"}, secrets={"auth.clientSecret"})
    with pytest.raises(NotConfigured) as info:
        connector.enable(entry, sync_action=SyncAction.IMMEDIATE, by="u1", now=T0, ids=ids)
    assert info.value.message == "OneDrive cannot be enabled: missing auth.tenantId"
    assert info.value.metadata["missing"] == ["auth.tenantId"]


def test_a_configured_oauth_connector_still_needs_an_authorization(ids: CountingIds) -> None:
    entry, connector = _new("googleWorkspace", ids)
    events = _configure(entry, connector, ids, auth={"clientId": "cid-123"}, secrets={"auth.clientSecret"})
    configured, status = events
    assert isinstance(configured, ConnectorConfigured) and isinstance(status, AuthStatusChanged)
    assert configured.changed_fields == ("auth.clientId", "auth.clientSecret", "baseUrl")
    assert status.status == "NOT_AUTHENTICATED"
    assert "cid-123" not in repr(events)
    with pytest.raises(NotConfigured) as info:
        connector.enable(entry, sync_action=SyncAction.IMMEDIATE, by="u1", now=T0, ids=ids)
    assert info.value.message == ("Google Workspace cannot be enabled: missing authorization (complete the OAuth flow)")
    connector.record_authorization(entry, ["DRIVE", "CALENDAR"], by="u2", now=T0, ids=ids)
    events = connector.pull_events()
    assert [type(e) for e in events] == [AuthStatusChanged, AppEnabled]
    enabled = events[1]
    assert isinstance(enabled, AppEnabled)
    assert enabled.apps == ("DRIVE", "CALENDAR")
    assert enabled.app_group_id == connector.id == "conn-googleWorkspace"
    assert enabled.app_group == "Google Workspace"
    assert connector.is_enabled
    assert connector.last_updated_by == "u2"


def test_an_api_token_connector_enables_with_all_apps(ids: CountingIds) -> None:
    connector = api_token_connector(CATALOG, ORG, T0, ids=ids)
    entry = CATALOG.get("confluence")
    assert connector.auth_type == "API_TOKEN"
    assert connector.auth_status.state == AuthState.AUTHENTICATED
    routes = EventRoutes(credentials_route="/c", refresh_token_route=None)
    connector.enable(entry, sync_action=SyncAction.SCHEDULED, by="u3", now=T0, ids=ids, routes=routes)
    (event,) = connector.pull_events()
    assert isinstance(event, AppEnabled)
    assert event.apps == ("CONFLUENCE",)
    assert event.sync_action == SyncAction.SCHEDULED
    assert event.credentials_route == "/c"
    assert event.app_group_id == connector.id
    connector.enable(entry, sync_action=SyncAction.SCHEDULED, by="u3", now=T0, ids=ids)
    assert connector.pull_events() == []
    connector.disable(by="u3", now=T0, ids=ids)
    (off,) = connector.pull_events()
    assert isinstance(off, AppDisabled)
    assert off.apps == ("CONFLUENCE",)
    connector.disable(by="u3", now=T0, ids=ids)
    assert connector.pull_events() == []


def test_an_enabled_connector_cannot_lose_a_requirement(ids: CountingIds) -> None:
    connector = api_token_connector(CATALOG, ORG, T0, ids=ids)
    entry = CATALOG.get("confluence")
    connector.enable(entry, sync_action=SyncAction.NONE, by="u1", now=T0, ids=ids)
    connector.pull_events()
    before = connector.snapshot()
    with pytest.raises(NotConfigured) as info:
        connector.update_configuration(
            entry,
            ConnectorConfig(
                auth={"authType": "API_TOKEN", "email": "a@example.com"},
                base_url="https://example.atlassian.net",
            ),
            by="u1",
            now=T0 + timedelta(seconds=5),
            ids=ids,
        )
    assert info.value.message == (
        "Confluence is enabled and the new configuration lacks auth.apiToken (needed for API_TOKEN): send them too"
        " (a PUT replaces the whole configuration; stored secrets may be left out), or disable the connector first"
    )
    assert info.value.metadata["missing"] == ["auth.apiToken"]
    assert connector == before
    assert connector.pull_events() == []


def test_an_auth_type_the_entry_does_not_offer_is_refused(ids: CountingIds) -> None:
    entry, connector = _new("onedrive", ids)
    with pytest.raises(DomainRuleViolation) as info:
        connector.update_configuration(entry, ConnectorConfig(auth={"authType": "API_TOKEN"}), by="u1", now=T0, ids=ids)
    assert type(info.value) is DomainRuleViolation
    assert "'API_TOKEN'" in info.value.message
    assert connector.pull_events() == []
    assert connector.auth_type == "OAUTH"


def test_recording_an_authorization_without_apps_is_refused(ids: CountingIds) -> None:
    entry, connector = _new("googleWorkspace", ids)
    _configure(entry, connector, ids, auth={"clientId": "cid"}, secrets={"auth.clientSecret"})
    before = connector.snapshot()
    apps = ScopeMapper(entry).apps_for(["openid", "email"])
    with pytest.raises(DomainRuleViolation) as info:
        connector.record_authorization(entry, apps, by="u1", now=T0, ids=ids)
    assert type(info.value) is DomainRuleViolation
    assert info.value.metadata == {"connector": "googleWorkspace"}
    assert connector == before
    assert connector.pull_events() == []


def test_configuration_events_name_fields_never_values(ids: CountingIds) -> None:
    entry, connector = _new("confluence", ids)
    events = _configure(
        entry,
        connector,
        ids,
        auth={"authType": "API_TOKEN", "email": "someone@secret-domain.example"},
        secrets={"auth.apiToken"},
        base_url="https://tenant-name.atlassian.net",
    )
    configured = events[0]
    assert isinstance(configured, ConnectorConfigured)
    assert configured.changed_fields == ("auth.apiToken", "auth.authType", "auth.email", "baseUrl")
    text = repr(events)
    assert "secret-domain" not in text
    assert "tenant-name" not in text


def test_changing_the_client_of_an_authorized_connector_asks_for_reauthorization(
    ids: CountingIds,
) -> None:
    entry, connector = _new("googleWorkspace", ids)
    _configure(entry, connector, ids, auth={"clientId": "cid-1"}, secrets={"auth.clientSecret"})
    connector.record_authorization(entry, ["DRIVE"], by="u1", now=T0, ids=ids)
    connector.pull_events()
    _configure(
        entry,
        connector,
        ids,
        auth={"clientId": "cid-1", "enableRealTimeUpdates": True},
        secrets={"auth.clientSecret"},
        changed_secrets=set(),
    )
    assert connector.auth_status.state == AuthState.AUTHENTICATED
    events = _configure(
        entry, connector, ids, auth={"clientId": "cid-2", "enableRealTimeUpdates": True}, secrets={"auth.clientSecret"}
    )
    configured, status = events
    assert isinstance(configured, ConnectorConfigured) and isinstance(status, AuthStatusChanged)
    assert status.status == "NEEDS_REAUTHENTICATION"
    assert connector.is_enabled


def test_writing_out_the_auth_type_it_already_has_is_not_a_new_client(ids: CountingIds) -> None:
    entry, connector = _new("googleWorkspace", ids)
    _configure(entry, connector, ids, auth={"authType": "OAUTH", "clientId": "cid"}, secrets={"auth.clientSecret"})
    connector.record_authorization(entry, ["DRIVE"], by="u1", now=T0, ids=ids)
    connector.pull_events()
    events = _configure(
        entry, connector, ids, auth={"clientId": "cid"}, secrets={"auth.clientSecret"}, changed_secrets=set()
    )
    assert [type(e) for e in events] == [ConnectorConfigured]
    assert connector.auth_status.state == AuthState.AUTHENTICATED


def test_dropping_another_auth_types_secret_keeps_the_authorization(ids: CountingIds) -> None:
    """A Jira connector that used an API token before keeps its OAuth consent when the save
    that drops that old token (not its OAuth client) comes."""
    entry, connector = _new("jira", ids)
    old = {"auth.clientSecret", "auth.apiToken"}
    _configure(entry, connector, ids, auth={"authType": "OAUTH", "clientId": "cid"}, secrets=old)
    connector.record_authorization(entry, ["JIRA"], by="u1", now=T0, ids=ids)
    connector.pull_events()
    events = _configure(
        entry,
        connector,
        ids,
        auth={"authType": "OAUTH", "clientId": "cid"},
        secrets={"auth.clientSecret"},
        changed_secrets={"auth.apiToken"},
    )
    assert [type(e) for e in events] == [ConnectorConfigured]
    assert connector.auth_status.state == AuthState.AUTHENTICATED


def test_switching_real_time_updates_announces_it_and_keeps_the_authorization(ids: CountingIds) -> None:
    entry, connector = _new("googleWorkspace", ids)
    _configure(entry, connector, ids, auth={"clientId": "cid-1"}, secrets={"auth.clientSecret"})
    connector.record_authorization(entry, ["GMAIL"], by="u1", now=T0, ids=ids)
    connector.pull_events()

    def announced(auth: dict[str, Any]) -> list[tuple[bool, str]]:
        events = _configure(
            entry,
            connector,
            ids,
            auth={"clientId": "cid-1", **auth},
            secrets={"auth.clientSecret"},
            changed_secrets=set(),
        )
        return [(e.enabled, e.topic_name) for e in events if isinstance(e, RealTimeUpdatesChanged)]

    topic = "projects/acme/topics/gmail"
    assert announced({"enableRealTimeUpdates": True, "topicName": topic}) == [(True, topic)]
    assert announced({"enableRealTimeUpdates": True, "topicName": topic + "-2"}) == [(True, topic + "-2")]
    assert announced({"enableRealTimeUpdates": False, "topicName": topic}) == [(False, "")]
    assert announced({"topicName": topic}) == []  # still off: nothing to announce
    assert connector.auth_status.state == AuthState.AUTHENTICATED  # where updates go is not the client


def test_mark_not_authenticated_disables_an_oauth_connector(ids: CountingIds) -> None:
    entry, connector = _new("onedrive", ids)
    _configure(
        entry,
        connector,
        ids,
        auth={"clientId": "cid", "tenantId": "contoso"},
        secrets={"auth.clientSecret"},
    )
    connector.record_authorization(entry, ["ONEDRIVE"], by="u1", now=T0, ids=ids)
    connector.pull_events()
    connector.mark_not_authenticated("revoked", now=T0, ids=ids, by="u9")
    events = connector.pull_events()
    assert [type(e) for e in events] == [AuthStatusChanged, AppDisabled]
    assert not connector.is_enabled
    assert connector.last_updated_by == "u9"
    connector.mark_not_authenticated("revoked", now=T0, ids=ids)
    assert connector.pull_events() == []


@pytest.mark.parametrize("key", ["googleWorkspace", "onedrive", "confluence"])
def test_recording_an_authorization_on_an_unconfigured_connector_is_refused(key: str, ids: CountingIds) -> None:
    """The aggregate promises that an enabled connector meets its catalog requirements.
    record_authorization enables, so it must refuse when the configuration lacks them (e.g.
    the client secret was removed while the person was on the provider's consent page)."""
    entry, connector = _new(key, ids)
    before = connector.snapshot()
    with pytest.raises(DomainRuleViolation):  # NotConfigured is one
        connector.record_authorization(entry, entry.apps[:1], by="u1", now=T0, ids=ids)
    assert connector == before
    assert not connector.is_enabled
    assert connector.pull_events() == []
