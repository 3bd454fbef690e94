"""The console's pages: the org's connectors, one connector, the event timeline, health."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from connector_core.model.connector import AuthState
from entrypoints.console.forms import config_form, filter_form, with_answers
from entrypoints.console.status import EVENT_TYPES, connector_row, connector_rows, matches, timeline
from entrypoints.console.web import BASE, Handler, Page
from entrypoints.health_report import check_health
from entrypoints.http.views import config_json

NOTICES: Mapping[str, str] = {
    "saved": "Configuration saved.",
    "enabled": "Connector enabled.",
    "disabled": "Connector disabled.",
    "filters": "Filter selection saved.",
    "connected": "Authorized: the connector holds a token and is enabled.",
    "revoked": "Tokens revoked at the provider and forgotten.",
}
STATES = tuple(str(s) for s in AuthState)


#: a connector key in a callback path
_KEY = r"(?P<key>[A-Za-z0-9_.-]{1,100})"


def oauth_base(p: Page, key: str) -> str:
    """Where the console completes ``key``'s authorizations: the service's own URL (always an
    allowed redirect origin) + ``/admin/oauth``, + ``/{key}`` when ``oauth_redirect_path`` does
    not name the connector (``/oauth/callback``, a front end with one callback page): the
    console's callback must know which connector the provider sends back. The redirect URI is
    this + ``oauth_redirect_path``."""
    base = p.state.container.settings.base_url.rstrip("/") + f"{BASE}/oauth"
    return base if "{connector}" in _redirect_path(p) else f"{base}/{key}"


def callback_key(p: Page, rest: str) -> str | None:
    """The connector a console callback path (``rest``, after ``/admin/oauth/``) names, as
    :func:`oauth_base` + ``oauth_redirect_path`` built it; None when it is no callback path.
    (The pending authorization is bound to its connector: a path naming another is refused.)"""
    template = re.escape(_redirect_path(p))
    connector = re.escape("{connector}")
    if connector in template:
        head, *tail = template.split(connector)
        pattern = head + _KEY + "(?P=key)".join(tail)
    else:
        pattern = "/" + _KEY + template
    found = re.fullmatch(pattern, "/" + rest)
    return found.group("key") if found else None


def _redirect_path(p: Page) -> str:
    path = p.state.container.oauth.settings.redirect_path
    return path if path.startswith("/") else f"/{path}"


def managed_here(handler: Handler) -> Handler:
    """``handler`` (a connector page or action), refused with a 409 page in proxy mode
    (``backend_url``): connectors belong to the backend there, and the local store is not
    theirs. A form would otherwise change the local store, unseen, and say it was saved."""

    @functools.wraps(handler)
    async def run(p: Page) -> Response:
        if p.state.container.backend is not None:
            return p.error(
                409,
                "Connectors are managed elsewhere",
                "This service forwards connector management to its backend (backend_url); manage connectors "
                "there. Nothing was changed here. Events and health are shown here.",
            )
        return await handler(p)

    return run


async def connectors(p: Page) -> Response:
    q = p.request.query_params
    text, state, enabled = q.get("q", "")[:100], q.get("state", ""), q.get("enabled", "")
    rows = await connector_rows(p.state, p.org_id)
    shown = [r for r in rows if matches(r, text, state, enabled)]
    return p.render(
        "connectors.html",
        rows=shown,
        total=len(rows),
        needs_reauth=sum(r.needs_reauth for r in rows),
        q=text,
        state=state,
        enabled=enabled,
        states=STATES,
        now=p.now,
    )


async def connector(
    p: Page,
    *,
    status: int = 200,
    problem: str | None = None,
    errors: list[dict[str, str]] | None = None,
    answers: Mapping[str, str] | None = None,
) -> Response:
    """One connector: status and token, actions, the configuration form, filters, and its
    latest events. Shown again with ``errors`` (and what was entered) after a refused save."""
    row = await connector_row(p.state, p.org_id, str(p.request.path_params["name"]))
    entry = row.view.entry
    config = config_json(row.view)["config"]
    config["auth"].setdefault("authType", row.view.connector.auth_type)
    sections = config_form(entry, config)
    if answers is not None:
        sections = with_answers(sections, answers)
    oauth = p.state.container.oauth
    redirect_uri = None
    if entry.oauth is not None:
        redirect_uri = oauth.settings.redirect_uri(oauth_base(p, entry.key), entry.key)
    done = p.request.query_params.get("done", "")
    values: dict[str, Any] = {
        "row": row,
        "entry": entry,
        "sections": sections,
        "errors": {e["path"]: e["message"] for e in errors or []},
        "problem": problem,
        "filters": filter_form(entry.filters, row.view.connector.filter_selection),
        "events": (await timeline(p.state, p.org_id, entry.key, ""))[:10],
        "redirect_uri": redirect_uri,
        "notice": NOTICES.get(done),
        "now": p.now,
    }
    return p.render("connector.html", status=status, **values)


async def events(p: Page) -> Response:
    q = p.request.query_params
    key, kind = q.get("connector", ""), q.get("type", "")
    catalog = p.state.container.catalog
    if key:
        key = catalog.get(key).key
    lines = await timeline(p.state, p.org_id, key, kind if kind in EVENT_TYPES else "")
    return p.render(
        "events.html",
        lines=lines,
        connector=key,
        kind=kind,
        keys=catalog.keys,
        types=EVENT_TYPES,
        now=p.now,
    )


async def health(p: Page) -> Response:
    container = p.state.container
    report = await check_health(container.health_checks, p.state.health_timeout)
    s = container.settings
    backends = {
        "storage": s.storage,
        "secrets": s.secrets,
        "events": s.events,
        "cache": s.cache,
        "locks": s.locks,
        "refresher in serve": "on" if s.run_refresher else "off",
    }
    return p.render("health.html", status=200 if report.healthy else 503, report=report, backends=backends)
