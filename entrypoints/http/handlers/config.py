"""A connector's configuration and the JSON Schema it is validated against."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from connector_core.catalog import thaw
from connector_core.services.connectors import ConfigUpdate
from entrypoints.http.endpoint import Call, ok
from entrypoints.http.handlers.connectors import cached
from entrypoints.http.validation import check
from entrypoints.http.views import config_json, connector_json


async def get_config(call: Call) -> Response:
    key = call.app.container.catalog.get(call.params["name"]).key

    async def load() -> dict[str, Any]:
        return config_json(await call.app.container.connectors.get(call.org_id, key))

    return ok(await cached(call, f"config:{key}", load))


async def put_config(call: Call) -> Response:
    container = call.app.container
    entry = container.catalog.get(call.params["name"])
    check(call.app.config_validator(entry.key), call.body, "configuration")
    update = ConfigUpdate(
        base_url=call.body["baseUrl"],
        auth=call.body.get("auth") or {},
        sync=call.body.get("sync") or {},
        filters=call.body.get("filters") or {},
    )
    view = await container.connectors.update_configuration(call.org_id, call.user_id, entry.key, update)
    return ok(
        {
            "message": "Configuration saved",
            "config": config_json(view),
            "connector": connector_json(view),
        }
    )


async def get_schema(call: Call) -> Response:
    entry = call.app.container.catalog.get(call.params["name"])
    return ok({"key": entry.key, "name": entry.display_name, "schema": thaw(entry.config_schema)})
