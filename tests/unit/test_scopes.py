"""ScopeMapper: scopes ↔ apps for every OAuth catalog entry."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector_core.catalog import CatalogEntry, load_default_catalog
from connector_core.errors import ValidationError
from connector_core.scopes import ScopeMapper

CATALOG = load_default_catalog()
OAUTH_ENTRIES = [e for e in CATALOG if e.oauth is not None]


def _by_key(entry: CatalogEntry) -> str:
    return entry.key


def _subsets(apps: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [tuple(combo) for n in range(len(apps) + 1) for combo in itertools.combinations(apps, n)]


def test_every_expected_entry_has_oauth() -> None:
    assert {e.key for e in OAUTH_ENTRIES} >= {
        "googleWorkspace",
        "onedrive",
        "sharepointOnline",
        "confluence",
        "jira",
        "slack",
    }


@pytest.mark.parametrize("entry", OAUTH_ENTRIES, ids=_by_key)
def test_apps_for_scopes_for_round_trips_every_subset_in_catalog_order(
    entry: CatalogEntry,
) -> None:
    mapper = ScopeMapper(entry)
    for subset in _subsets(entry.apps):
        for order in itertools.permutations(subset):
            scopes = mapper.scopes_for(order)
            assert len(scopes) == len(set(scopes))
            assert mapper.apps_for(scopes) == subset, (entry.key, order, scopes)


@pytest.mark.parametrize("entry", OAUTH_ENTRIES, ids=_by_key)
def test_scopes_for_includes_the_base_scopes_and_one_scope_per_app(entry: CatalogEntry) -> None:
    assert entry.oauth is not None
    mapper = ScopeMapper(entry)
    base = [s for s in entry.oauth.default_scopes if s not in entry.oauth.scope_apps]
    for subset in _subsets(entry.apps):
        scopes = mapper.scopes_for(subset)
        assert list(scopes[: len(base)]) == base
        app_scopes = scopes[len(base) :]
        assert len(app_scopes) == len(subset)
        assert [entry.oauth.scope_apps[s] for s in app_scopes] == list(subset)
    # Asking for every app requests the default scopes (the app ones among them).
    assert set(mapper.scopes_for(entry.apps)) <= set(entry.oauth.default_scopes)
    assert mapper.default_scopes() == entry.oauth.default_scopes


@settings(max_examples=80, deadline=None)
@given(data=st.data(), entry=st.sampled_from(OAUTH_ENTRIES))
def test_apps_for_ignores_unknown_scopes(data: st.DataObject, entry: CatalogEntry) -> None:
    assert entry.oauth is not None
    mapper = ScopeMapper(entry)
    scope_apps = entry.oauth.scope_apps
    known = sorted(scope_apps)
    granted = data.draw(st.lists(st.sampled_from(known), unique=True))
    unknown = data.draw(st.lists(st.text(max_size=30).filter(lambda s: s not in scope_apps), max_size=5))
    mixed = data.draw(st.permutations([*granted, *unknown]))
    expected = tuple(a for a in entry.apps if a in {entry.oauth.scope_apps[s] for s in granted})
    assert mapper.apps_for(mixed) == expected
    assert mapper.apps_for(unknown) == ()
    # Duplicates change nothing.
    assert mapper.apps_for([*mixed, *mixed]) == expected


@pytest.mark.parametrize("entry", OAUTH_ENTRIES, ids=_by_key)
def test_apps_for_example_scopes(entry: CatalogEntry) -> None:
    mapper = ScopeMapper(entry)
    assert mapper.apps_for(["openid", "email", "offline_access", "not-a-scope"]) == ()
    assert mapper.apps_for([]) == ()


def test_google_scopes_example() -> None:
    mapper = ScopeMapper(CATALOG.get("googleWorkspace"))
    assert mapper.apps_for(
        [
            "https://www.googleapis.com/auth/drive",
            "https://www.googleapis.com/auth/calendar.readonly",
        ]
    ) == ("DRIVE", "CALENDAR")
    assert mapper.scopes_for(["GMAIL"]) == (
        "openid",
        "email",
        "profile",
        "https://www.googleapis.com/auth/gmail.readonly",
    )


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    entry=st.sampled_from(OAUTH_ENTRIES),
    bogus=st.text(min_size=1, max_size=20),
)
def test_scopes_for_an_unknown_app_names_the_apps_field(data: st.DataObject, entry: CatalogEntry, bogus: str) -> None:
    if bogus in entry.apps:
        return
    known = data.draw(st.lists(st.sampled_from(entry.apps), unique=True))
    with pytest.raises(ValidationError) as info:
        ScopeMapper(entry).scopes_for([*known, bogus])
    assert [e["path"] for e in info.value.errors] == ["apps"]
    assert info.value.message.startswith("apps:")
    assert bogus in info.value.errors[0]["message"]


def test_mapper_for_an_entry_without_oauth_knows_no_apps() -> None:
    entry = CatalogEntry.from_dict({"key": "plain", "authTypes": ["API_TOKEN"], "requirements": {"API_TOKEN": []}})
    mapper = ScopeMapper(entry)
    assert mapper.apps_for(["anything"]) == ()
    assert mapper.default_scopes() == ()
    with pytest.raises(ValidationError) as info:
        mapper.scopes_for(["PLAIN"])
    assert info.value.errors[0]["path"] == "apps"
