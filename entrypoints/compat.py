"""The compatibility profile (``compat = "pipeshub"``): what the existing Node.js service's
consumers read, where ours differs. Our own shapes stay the default; docs/migration.md lists
every difference and why.

Wired here (the composition root asks): the connector key aliases, the credentials route
announced in ``appEnabled``, the legacy code exchange's default redirect URI, and disabling a
connector that needs re-authentication. The HTTP side (the credentials route itself, the
``getTokenFromCode`` body, scoped tokens without ``exp``, the proxy's body) is in
:mod:`entrypoints.http.compat`; the event shapes are :mod:`adapters.event_wire`'s ``pipeshub``
profile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from entrypoints.settings import Settings

PIPESHUB = "pipeshub"

#: the existing service's connector keys that are not ours (``sharepoint`` is an alias anyway);
#: its one Atlassian connector covered Confluence and Jira, which are two connectors here
KEY_ALIASES = {"atlassian": "confluence"}

#: where the existing consumers fetch an individual Google account's tokens (the configuration
#: manager's route, served here under the profile)
GOOGLE_CREDENTIALS_PATH = "/api/v1/configurationManager/internal/connectors/individual/googleWorkspaceCredentials"
GOOGLE_CONNECTOR = "googleWorkspace"

#: the front-end page the existing service used as the redirect URI of the legacy code exchange
LEGACY_REDIRECT_PATH = "/account/individual/settings/connector/googleWorkspace"


def enabled(settings: Settings) -> bool:
    return settings.compat == PIPESHUB


def legacy_redirect_uri(settings: Settings) -> str | None:
    """``oauth_legacy_redirect_uri`` when set; under the profile, else the front end's page."""
    if settings.oauth_legacy_redirect_uri or not enabled(settings) or not settings.frontend_url:
        return settings.oauth_legacy_redirect_uri
    return settings.frontend_url.rstrip("/") + LEGACY_REDIRECT_PATH
