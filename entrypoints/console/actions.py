"""What the console's forms do, each through the same service the API route uses: save the
configuration, enable or disable, save filters, connect (OAuth, completed by the console's own
callback page), revoke."""

from __future__ import annotations

from starlette.responses import Response

from connector_core.errors import ConnectorManagerError, DomainRuleViolation, ValidationError
from entrypoints.console.forms import config_body, config_form, filter_selection
from entrypoints.console.pages import callback_key, connector, oauth_base
from entrypoints.console.status import connector_row
from entrypoints.console.web import BASE, Page
from entrypoints.http.errors import status_for
from entrypoints.http.handlers.config import save_configuration
from entrypoints.http.views import config_json


def _name(p: Page) -> str:
    return p.state.container.catalog.get(str(p.request.path_params["name"])).key


def _back(p: Page, key: str, done: str) -> Response:
    return p.redirect(f"{BASE}/connectors/{key}?done={done}")


async def save_config(p: Page) -> Response:
    key = _name(p)
    view = await p.state.container.connectors.get(p.org_id, key)
    sections = config_form(view.entry, config_json(view)["config"])
    answers = dict(p.form)
    body, unreadable = config_body(sections, answers)
    try:
        if unreadable:
            raise ValidationError(f"invalid configuration: {unreadable[0]['path']} {unreadable[0]['message']}")
        await save_configuration(p.state, p.org_id, p.user_id, key, body)
    except (ValidationError, DomainRuleViolation) as exc:
        listed = unreadable or list(exc.metadata.get("errors", []))
        return await connector(p, status=status_for(exc), problem=exc.message, errors=listed, answers=answers)
    return _back(p, key, "saved")


async def toggle(p: Page) -> Response:
    key = _name(p)
    wanted = p.value("enabled") == "true"
    try:
        await p.state.container.connectors.set_enabled(p.org_id, p.user_id, key, wanted)
    except DomainRuleViolation as exc:  # not configured yet, ...
        return await connector(p, status=status_for(exc), problem=exc.message)
    return _back(p, key, "enabled" if wanted else "disabled")


async def save_filters(p: Page) -> Response:
    key = _name(p)
    entry = p.state.container.catalog.get(key)
    values: dict[str, list[str]] = {}
    for name, value in p.form:
        values.setdefault(name, []).append(value)
    try:
        await p.state.container.connectors.save_filters(
            p.org_id, p.user_id, key, filter_selection(entry.filters, values)
        )
    except (ValidationError, DomainRuleViolation) as exc:
        return await connector(p, status=status_for(exc), problem=exc.message)
    return _back(p, key, "filters")


async def connect(p: Page) -> Response:
    """Start the authorization: the provider sends the person back to :func:`callback`."""
    key = _name(p)
    try:
        url = await p.state.container.oauth.authorization_url(p.org_id, p.user_id, key, oauth_base(p, key))
    except (ValidationError, DomainRuleViolation) as exc:
        return await connector(p, status=status_for(exc), problem=exc.message)
    return p.redirect(url)


async def callback(p: Page) -> Response:
    """The provider's redirect back: exchange the code and store the token (or record the
    refusal), then show the connector."""
    name = callback_key(p, str(p.request.path_params["rest"]))
    if name is None:
        return p.error(404, "Not found", "This is not an authorization callback of this console.")
    key = p.state.container.catalog.get(name).key
    q = p.request.query_params
    try:
        result = await p.state.container.oauth.handle_callback(
            p.org_id,
            p.user_id,
            key,
            code=q.get("code"),
            state=q.get("state"),
            error=q.get("error"),
            error_description=q.get("error_description"),
            base_url=oauth_base(p, key),
        )
    except ConnectorManagerError as exc:
        return p.render(
            "callback_failed.html",
            status=status_for(exc),
            key=key,
            name=p.state.container.catalog.get(key).display_name,
            message=exc.message,
        )
    if not result.authenticated:
        return p.render(
            "callback_failed.html",
            status=200,
            key=key,
            name=result.connector.entry.display_name,
            message=result.reason or "",
        )
    return _back(p, key, "connected")


async def revoke_form(p: Page) -> Response:
    row = await connector_row(p.state, p.org_id, _name(p))
    return p.render("revoke.html", row=row)


async def revoke(p: Page) -> Response:
    key = _name(p)
    try:
        await p.state.container.oauth.revoke(p.org_id, p.user_id, key)
    except DomainRuleViolation as exc:
        return await connector(p, status=status_for(exc), problem=exc.message)
    return _back(p, key, "revoked")
