"""Scopes ↔ apps, per catalog entry, both directions."""

from __future__ import annotations

from collections.abc import Iterable

from connector_core.catalog import CatalogEntry
from connector_core.errors import ValidationError

__all__ = ["ScopeMapper"]


class ScopeMapper:
    """Maps the OAuth scopes of one catalog entry to its apps and back."""

    def __init__(self, entry: CatalogEntry) -> None:
        self.entry = entry
        self._scope_apps = dict(entry.oauth.scope_apps) if entry.oauth else {}
        self._app_scopes: dict[str, list[str]] = {}
        for scope, app in self._scope_apps.items():
            self._app_scopes.setdefault(app, []).append(scope)

    def apps_for(self, scopes: Iterable[str]) -> tuple[str, ...]:
        """Apps the granted ``scopes`` give access to, in catalog order."""
        granted = {self._scope_apps[s] for s in scopes if s in self._scope_apps}
        return tuple(app for app in self.entry.apps if app in granted)

    def scopes_for(self, apps: Iterable[str]) -> tuple[str, ...]:
        """Scopes to request for ``apps``: the entry's base scopes (those that map to no app)
        plus the first scope of each app. Unknown apps are a :class:`ValidationError`."""
        wanted = list(dict.fromkeys(apps))
        unknown = [a for a in wanted if a not in self._app_scopes]
        if unknown:
            raise ValidationError.for_field(
                "apps", f"unknown app(s) {', '.join(unknown)}; known: {', '.join(self.entry.apps)}"
            )
        default = self.entry.oauth.default_scopes if self.entry.oauth else ()
        base = [s for s in default if s not in self._scope_apps]
        app_scopes = [
            next((s for s in default if self._scope_apps.get(s) == app), self._app_scopes[app][0]) for app in wanted
        ]
        return tuple(dict.fromkeys([*base, *app_scopes]))

    def default_scopes(self) -> tuple[str, ...]:
        return self.entry.oauth.default_scopes if self.entry.oauth else ()
