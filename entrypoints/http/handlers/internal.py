"""Routes for other services (scoped tokens): token refresh, credentials, events, reload."""

from __future__ import annotations

from starlette.responses import Response

from adapters.event_wire import envelope
from connector_core.errors import PermissionDenied, ValidationError
from connector_core.services.credentials import stored_credentials
from entrypoints.http.endpoint import Call, ok
from entrypoints.http.views import iso


def scoped_org(call: Call, given: str | None) -> str:
    assert call.principal is not None
    org = given or call.principal.org_id
    if not org:
        raise ValidationError.for_field("orgId", "is required (body or token claim)")
    if call.principal.org_id and given and given != call.principal.org_id:
        raise PermissionDenied("the scoped token is bound to another org")
    return org


async def refresh_token(call: Call) -> Response:
    refresher = call.app.container.refresher
    org = scoped_org(call, call.body.get("orgId"))
    name = call.body.get("connector") or "googleWorkspace"
    await refresher.refresh_connector(org, name)
    return ok({"message": "Token refreshed"})


async def get_credentials(call: Call) -> Response:
    """An OAuth connector's fresh access token; any other connector's stored credentials (its
    auth fields, secrets included), for the org of the scoped token only."""
    container = call.app.container
    org = scoped_org(call, call.query.get("orgId"))
    view = await container.connectors.get(org, call.params["name"])
    if not view.connector.is_new and not view.connector.uses_oauth:
        stored = await stored_credentials(container.ctx, org, call.params["name"])
        return ok({**stored.fields, "authType": stored.auth_type, "baseUrl": stored.base_url})
    record = await container.refresher.fresh_token(org, call.params["name"])
    tokens = record.tokens
    return ok(
        {
            "accessToken": tokens.access_token,
            "tokenType": tokens.token_type,
            "expiresAt": iso(tokens.expires_at),
            "scopes": sorted(tokens.scopes),
        },
    )


async def recent_events(call: Call) -> Response:
    """The newest events, or with ``after`` the ones stored after that event; ``next`` is where
    to read on from (:meth:`OutboxReader.resume_point`: never past an event still to land, so
    the newest events may come again: callers dedupe on ``eventId``)."""
    limit = min(int(call.query.get("limit") or 100), 1000)
    org = call.principal.org_id if call.principal else None
    outbox = call.app.container.storage.outbox
    after: str | None = call.query.get("after")
    messages = await (outbox.after(after, limit, org_id=org) if after else outbox.recent(limit, org_id=org))
    events = [envelope(m, call.app.container.settings.compat) for m in messages]
    return ok({"events": events, "next": await outbox.resume_point(messages, after=after, org_id=org)})


async def update_app_config(call: Call) -> Response:
    assert call.principal is not None
    if call.principal.org_id is not None:
        # a reload re-reads every org's configuration: not for a token bound to one org
        raise PermissionDenied("only a service token not bound to an org may reload the configuration")
    generation, keys = await call.app.reload()
    return ok(
        {
            "message": "Application configuration reloaded",
            "generation": generation,
            "connectors": keys,
        }
    )
