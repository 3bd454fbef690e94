"""The built-in connector catalog: entries, lookups, schemas, OAuth specs, custom providers
and filter-selection validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector_core.catalog import Catalog, CatalogEntry, OAuthSpec, load_default_catalog, thaw
from connector_core.errors import UnknownConnector, ValidationError
from connector_core.services.connectors import validate_filter_selection

CATALOG = load_default_catalog()
ENTRIES = list(CATALOG)
EXPECTED_KEYS = ("googleWorkspace", "onedrive", "sharepointOnline", "confluence", "jira", "slack")
MICROSOFT = ("onedrive", "sharepointOnline")
ATLASSIAN = ("confluence", "jira")

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _by_key(entry: CatalogEntry) -> str:
    return entry.key


def _schema_node(schema: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The sub-schema at a dotted property path (following no $ref), or None."""
    node: Mapping[str, Any] | None = schema
    for part in path.split("."):
        if node is None:
            return None
        props = node.get("properties")
        if not isinstance(props, Mapping) or part not in props:
            return None
        node = props[part]
    return node


# -- loading and lookups ------------------------------------------------------------------------


def test_default_catalog_loads_with_the_expected_connectors() -> None:
    catalog = load_default_catalog()
    assert isinstance(catalog, Catalog)
    assert set(EXPECTED_KEYS) <= set(catalog.keys)
    assert len(catalog) == len(catalog.keys) == len(set(catalog.keys))
    for key in EXPECTED_KEYS:
        entry = catalog.get(key)
        assert entry.key == key
        assert entry.apps, key
        assert entry.auth_types, key
        assert entry.default_auth_type == entry.auth_types[0]
        assert not entry.custom


@pytest.mark.parametrize("key", EXPECTED_KEYS)
def test_every_auth_type_has_requirements_and_oauth_entries_have_a_spec(key: str) -> None:
    entry = CATALOG.get(key)
    for auth_type in entry.auth_types:
        assert entry.requirements_for(auth_type), (key, auth_type)
    if "OAUTH" in entry.auth_types:
        assert entry.oauth is not None
        assert set(entry.oauth.scope_apps.values()) == set(entry.apps)


@FAST
@given(
    entry=st.sampled_from(ENTRIES),
    flips=st.lists(st.booleans(), min_size=64, max_size=64),
    pad=st.sampled_from(["", " ", "  ", "\t"]),
)
def test_lookup_is_case_insensitive_for_keys_and_aliases(entry: CatalogEntry, flips: list[bool], pad: str) -> None:
    for name in (entry.key, *entry.aliases):
        mangled = "".join(c.upper() if flip else c.lower() for c, flip in zip(name, flips, strict=False))
        assert CATALOG.get(pad + mangled + pad) is entry
        assert CATALOG.find(mangled) is entry


@pytest.mark.parametrize(
    ("alias", "key"),
    [
        ("google", "googleWorkspace"),
        ("GMAIL", "googleWorkspace"),
        ("Drive", "googleWorkspace"),
        ("one-drive", "onedrive"),
        ("SharePoint", "sharepointOnline"),
        ("sharepoint-online", "sharepointOnline"),
        ("atlassian-confluence", "confluence"),
        ("Atlassian-Jira", "jira"),
        ("SLACK", "slack"),
    ],
)
def test_lookup_by_alias(alias: str, key: str) -> None:
    assert CATALOG.get(alias).key == key


@FAST
@given(name=st.text(min_size=1, max_size=300))
def test_unknown_connector_lists_the_known_keys(name: str) -> None:
    if CATALOG.find(name) is not None:
        return
    with pytest.raises(UnknownConnector) as info:
        CATALOG.get(name)
    err = info.value
    assert err.metadata["knownConnectors"] == list(CATALOG.keys)
    assert err.code == "CONNECTOR_NOT_FOUND"
    for key in EXPECTED_KEYS:
        assert key in err.message


def test_unknown_connector_example() -> None:
    with pytest.raises(UnknownConnector) as info:
        CATALOG.get("dropbox")
    assert "dropbox" in info.value.message
    assert set(EXPECTED_KEYS) <= set(info.value.metadata["knownConnectors"])


# -- configuration schemas ----------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES, ids=_by_key)
def test_config_schema_is_a_valid_draft_2020_12_schema(entry: CatalogEntry) -> None:
    schema = thaw(entry.config_schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    # The $ref to the shared sync definition resolves.
    validator.validate({"baseUrl": "https://example.com", "sync": {"schedule": "daily"}})
    assert not validator.is_valid({"baseUrl": "https://example.com", "sync": {"schedule": "x"}})
    assert not validator.is_valid({})  # baseUrl is required
    assert not validator.is_valid({"baseUrl": "https://example.com", "unknown": 1})


@pytest.mark.parametrize("entry", ENTRIES, ids=_by_key)
def test_every_requirement_path_exists_in_the_schema(entry: CatalogEntry) -> None:
    schema = thaw(entry.config_schema)
    for auth_type in entry.auth_types:
        for path in entry.requirements_for(auth_type):
            assert _schema_node(schema, path) is not None, (entry.key, auth_type, path)
    auth_type_enum = _schema_node(schema, "auth.authType")
    assert auth_type_enum is not None
    assert list(auth_type_enum["enum"]) == list(entry.auth_types)


@pytest.mark.parametrize("entry", ENTRIES, ids=_by_key)
def test_secret_fields_are_write_only(entry: CatalogEntry) -> None:
    schema = thaw(entry.config_schema)
    assert entry.secret_fields
    for path in entry.secret_fields:
        node = _schema_node(schema, path)
        assert node is not None, path
        assert node.get("writeOnly") is True, path
    # Conversely: every writeOnly auth property is listed as a secret.
    auth_props = _schema_node(schema, "auth")
    assert auth_props is not None
    write_only = {f"auth.{name}" for name, sub in auth_props["properties"].items() if sub.get("writeOnly")}
    assert write_only == set(entry.secret_fields)
    if "OAUTH" in entry.auth_types:
        assert "auth.clientSecret" in entry.secret_fields
        assert "auth.clientId" not in entry.secret_fields


def test_secret_fields_by_connector() -> None:
    assert set(CATALOG.get("googleWorkspace").secret_fields) == {
        "auth.clientSecret",
        "auth.serviceAccountJson",
    }
    assert set(CATALOG.get("confluence").secret_fields) == {"auth.clientSecret", "auth.apiToken"}
    assert set(CATALOG.get("onedrive").secret_fields) == {"auth.clientSecret"}


# -- OAuth specs --------------------------------------------------------------------------------


def test_google_asks_for_offline_access_and_consent() -> None:
    oauth = CATALOG.get("googleWorkspace").oauth
    assert oauth is not None
    assert oauth.extra_authorize_params["access_type"] == "offline"
    assert oauth.extra_authorize_params["prompt"] == "consent"
    assert oauth.url_params == ()
    assert oauth.resolve({}) is oauth


@pytest.mark.parametrize("key", ATLASSIAN)
def test_atlassian_entries_ask_for_the_api_audience_and_consent(key: str) -> None:
    oauth = CATALOG.get(key).oauth
    assert oauth is not None
    assert oauth.extra_authorize_params["audience"] == "api.atlassian.com"
    assert oauth.extra_authorize_params["prompt"] == "consent"
    assert "offline_access" in oauth.default_scopes


@pytest.mark.parametrize("key", MICROSOFT)
@pytest.mark.parametrize("params", [{}, {"tenantId": ""}, {"tenantId": None}, {"other": "x"}])
def test_microsoft_urls_need_the_tenant_id(key: str, params: dict[str, Any]) -> None:
    oauth = CATALOG.get(key).oauth
    assert oauth is not None
    assert "tenantId" in oauth.url_params
    with pytest.raises(ValidationError) as info:
        oauth.resolve(params)
    assert {"path": "auth.tenantId", "message": "is required"} in info.value.errors
    assert "auth.tenantId" in info.value.message


@FAST
@given(
    key=st.sampled_from(MICROSOFT),
    tenant=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.-]{0,40}", fullmatch=True),
)
def test_microsoft_urls_are_built_with_the_tenant_id(key: str, tenant: str) -> None:
    oauth = CATALOG.get(key).oauth
    assert oauth is not None
    resolved = oauth.resolve({"tenantId": tenant})
    assert isinstance(resolved, OAuthSpec)
    for url in (resolved.authorize_url, resolved.token_url, resolved.jwks_uri):
        assert url is not None
        assert f"/{tenant}/" in url + "/"
        assert "{" not in url
    # the issuer names the tenant of each token (its tid claim), whatever name was configured
    assert resolved.issuer == "https://login.microsoftonline.com/{tenantid}/v2.0"
    assert resolved.url_params == ()
    assert resolved.default_scopes == oauth.default_scopes
    assert resolved.scope_apps == oauth.scope_apps
    # Resolving again is a no-op.
    assert resolved.resolve({}) is resolved


def test_microsoft_example_url() -> None:
    oauth = CATALOG.get("onedrive").oauth
    assert oauth is not None
    resolved = oauth.resolve({"tenantId": "contoso.onmicrosoft.com"})
    assert resolved.authorize_url == ("https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize")
    assert resolved.token_url == ("https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token")


# -- custom providers ---------------------------------------------------------------------------


def _custom_provider(key: str = "gitlab") -> dict[str, Any]:
    return {
        "key": key,
        "displayName": "GitLab",
        "apps": ["GITLAB"],
        "oauth": {
            "authorizeUrl": "https://gitlab.example.com/oauth/authorize",
            "tokenUrl": "https://gitlab.example.com/oauth/token",
            "revocationUrl": "https://gitlab.example.com/oauth/revoke",
            "defaultScopes": ["openid", "read_api"],
            "scopeApps": {"read_api": "GITLAB"},
        },
    }


def test_with_custom_providers_adds_a_provider_from_a_dict() -> None:
    extended = CATALOG.with_custom_providers([_custom_provider()])
    assert len(extended) == len(CATALOG) + 1
    assert extended.keys[: len(CATALOG)] == CATALOG.keys
    entry = extended.get("GitLab")
    assert entry.key == "gitlab"
    assert entry.custom
    assert entry.apps == ("GITLAB",)
    assert entry.auth_types == ("OAUTH",)
    assert entry.requirements_for("OAUTH") == ("auth.clientId", "auth.clientSecret")
    assert entry.secret_fields == ("auth.clientSecret",)
    assert entry.oauth is not None
    assert entry.oauth.authorize_url == "https://gitlab.example.com/oauth/authorize"
    assert entry.oauth.token_url == "https://gitlab.example.com/oauth/token"
    assert entry.oauth.revocation_url == "https://gitlab.example.com/oauth/revoke"
    assert entry.oauth.scope_apps == {"read_api": "GITLAB"}
    # Its default schema is valid and resolves the shared sync definition.
    schema = thaw(entry.config_schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(
        {"baseUrl": "https://gitlab.example.com", "auth": {"clientId": "c"}, "sync": {}}
    )
    # The original catalog is untouched.
    assert CATALOG.find("gitlab") is None


@pytest.mark.parametrize("key", ["googleWorkspace", "SLACK", "google", "One-Drive"])
def test_with_custom_providers_rejects_a_duplicate_key(key: str) -> None:
    with pytest.raises(ValidationError) as info:
        CATALOG.with_custom_providers([_custom_provider(key)])
    assert info.value.errors[0]["path"] == "key"


def test_with_custom_providers_rejects_two_providers_with_the_same_key() -> None:
    with pytest.raises(ValidationError):
        CATALOG.with_custom_providers([_custom_provider("acme"), _custom_provider("ACME")])


def test_custom_provider_without_token_url_names_the_field() -> None:
    provider = _custom_provider()
    del provider["oauth"]["tokenUrl"]
    with pytest.raises(ValidationError) as info:
        CATALOG.with_custom_providers([provider])
    assert info.value.errors == [{"path": "oauth.tokenUrl", "message": "is required"}]


# -- filter selections --------------------------------------------------------------------------

_ISO_DATES = st.dates().map(lambda d: d.isoformat())
_STRINGS = st.text(max_size=20)


@st.composite
def valid_selections(draw: st.DrawFn, entry: CatalogEntry) -> dict[str, Any]:
    selection: dict[str, Any] = {}
    for definition in entry.filters:
        if not draw(st.booleans()):
            continue
        if draw(st.integers(0, 9)) == 0:
            selection[definition.key] = None
        elif definition.type == "multiselect":
            selection[definition.key] = draw(st.lists(st.sampled_from(definition.options), unique=True))
        elif definition.type == "list":
            selection[definition.key] = draw(st.lists(_STRINGS, max_size=5))
        elif definition.type == "date":
            selection[definition.key] = draw(_ISO_DATES)
        elif definition.type == "boolean":
            selection[definition.key] = draw(st.booleans())
        else:
            selection[definition.key] = draw(_STRINGS)
    return selection


@FAST
@given(data=st.data(), entry=st.sampled_from(ENTRIES))
def test_validate_filter_selection_accepts_valid_selections(data: st.DataObject, entry: CatalogEntry) -> None:
    selection = data.draw(valid_selections(entry))
    assert validate_filter_selection(entry, selection) == selection


@FAST
@given(
    data=st.data(),
    entry=st.sampled_from(ENTRIES),
    bad_key=st.text(min_size=1, max_size=20),
)
def test_validate_filter_selection_rejects_unknown_keys(data: st.DataObject, entry: CatalogEntry, bad_key: str) -> None:
    if entry.filter(bad_key) is not None:
        return
    selection = data.draw(valid_selections(entry))
    selection[bad_key] = ["x"]
    with pytest.raises(ValidationError) as info:
        validate_filter_selection(entry, selection)
    assert [e["path"] for e in info.value.errors] == [f"filterOptions.{bad_key}"]
    assert "unknown filter" in info.value.errors[0]["message"]


def _wrong_values(kind: str) -> st.SearchStrategy[Any]:
    if kind == "boolean":
        return st.one_of(st.integers(), st.text(), st.lists(st.booleans(), min_size=1))
    if kind == "string":
        return st.one_of(st.integers(), st.booleans(), st.text(min_size=1025, max_size=1030))
    if kind == "date":
        return st.one_of(
            st.integers(),
            st.booleans(),
            st.sampled_from(["yesterday", "2026-13-01", "2026-02-30", "01/02/2026", ""]),
        )
    return st.one_of(
        st.text(),
        st.integers(),
        st.booleans(),
        st.lists(st.integers(), min_size=1, max_size=3),
        st.dictionaries(st.text(max_size=3), st.text(max_size=3), min_size=1, max_size=2),
    )


@FAST
@given(data=st.data(), entry=st.sampled_from(ENTRIES))
def test_validate_filter_selection_rejects_wrong_types(data: st.DataObject, entry: CatalogEntry) -> None:
    definition = data.draw(st.sampled_from(entry.filters))
    value = data.draw(_wrong_values(definition.type))
    with pytest.raises(ValidationError) as info:
        validate_filter_selection(entry, {definition.key: value})
    assert [e["path"] for e in info.value.errors] == [f"filterOptions.{definition.key}"]


@pytest.mark.parametrize("entry", [e for e in ENTRIES if any(f.options for f in e.filters)])
def test_validate_filter_selection_rejects_unknown_options(entry: CatalogEntry) -> None:
    definition = next(f for f in entry.filters if f.type == "multiselect")
    with pytest.raises(ValidationError) as info:
        validate_filter_selection(entry, {definition.key: [definition.options[0], "bogus"]})
    assert info.value.errors[0]["path"] == f"filterOptions.{definition.key}"
    assert "bogus" in info.value.errors[0]["message"]


def test_validate_filter_selection_reports_every_bad_field() -> None:
    entry = CATALOG.get("googleWorkspace")
    with pytest.raises(ValidationError) as info:
        validate_filter_selection(
            entry,
            {
                "fileTypes": ["pdf", "nope"],
                "modifiedAfter": "not-a-date",
                "includeTrashed": "yes",
                "mystery": True,
                "sharedDrives": ["ok"],
            },
        )
    assert sorted(e["path"] for e in info.value.errors) == [
        "filterOptions.fileTypes",
        "filterOptions.includeTrashed",
        "filterOptions.modifiedAfter",
        "filterOptions.mystery",
    ]
    assert info.value.metadata["errors"] == info.value.errors


def test_validate_filter_selection_limits_list_length() -> None:
    entry = CATALOG.get("googleWorkspace")
    assert validate_filter_selection(entry, {"sharedDrives": ["d"] * 1000})
    with pytest.raises(ValidationError) as info:
        validate_filter_selection(entry, {"sharedDrives": ["d"] * 1001})
    assert info.value.errors[0]["path"] == "filterOptions.sharedDrives"


def test_custom_provider_secrets_must_be_direct_auth_fields() -> None:
    from connector_core.catalog import load_default_catalog
    from connector_core.errors import ValidationError

    schema = {
        "type": "object",
        "properties": {
            "auth": {
                "type": "object",
                "properties": {
                    "signing": {"type": "object", "properties": {"privateKey": {"type": "string", "writeOnly": True}}}
                },
            },
            "sync": {"type": "object", "properties": {"webhookSecret": {"type": "string", "writeOnly": True}}},
        },
    }
    provider = {
        "key": "nested",
        "configSchema": schema,
        "oauth": {"authorizeUrl": "https://i.example/a", "tokenUrl": "https://i.example/t"},
    }
    with pytest.raises(ValidationError) as err:
        load_default_catalog().with_custom_providers([provider])
    assert err.value.errors[0]["path"].startswith("configSchema.")
