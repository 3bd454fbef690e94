"""Routes for other services (scoped tokens): token refresh, credentials, events, reload."""

from __future__ import annotations

from starlette.responses import Response

from adapters.event_wire import envelope
from connector_core.errors import PermissionDenied, ValidationError
from entrypoints.http.endpoint import Call, ok
from entrypoints.http.views import iso


def _scoped_org(call: Call, given: str | None) -> str:
    assert call.principal is not None
    org = given or call.principal.org_id
    if not org:
        raise ValidationError.for_field("orgId", "is required (body or token claim)")
    if call.principal.org_id and given and given != call.principal.org_id:
        raise PermissionDenied("the scoped token is bound to another org")
    return org


async def refresh_token(call: Call) -> Response:
    refresher = call.app.container.refresher
    org = _scoped_org(call, call.body.get("orgId"))
    name = call.body.get("connector") or "googleWorkspace"
    await refresher.refresh_connector(org, name)
    return ok({"message": "Token refreshed"})


async def get_credentials(call: Call) -> Response:
    refresher = call.app.container.refresher
    org = _scoped_org(call, call.query.get("orgId"))
    record = await refresher.fresh_token(org, call.params["name"])
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
    limit = int(call.query.get("limit") or 100)
    org = call.principal.org_id if call.principal else None
    messages = await call.app.container.storage.outbox.recent(min(limit, 1000), org_id=org)
    return ok({"events": [envelope(m) for m in messages]})


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
