"""A connector's filter selection."""

from __future__ import annotations

from starlette.responses import Response

from entrypoints.http.endpoint import Call, ok
from entrypoints.http.views import filters_json


async def get_filters(call: Call) -> Response:
    view = await call.app.container.connectors.get(call.org_id, call.params["name"])
    return ok(filters_json(view))


async def save_filters(call: Call) -> Response:
    view = await call.app.container.connectors.save_filters(
        call.org_id, call.user_id, call.params["name"], call.body["filterOptions"]
    )
    return ok(filters_json(view))
