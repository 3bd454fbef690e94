"""A connector's configuration and the JSON Schema it is validated against."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from connector_core.catalog import thaw
from connector_core.services.connectors import ConfigUpdate, ConnectorView
from entrypoints.http.endpoint import Call, ok
from entrypoints.http.handlers.connectors import answer, cached
from entrypoints.http.state import ApiState
from entrypoints.http.validation import check, check_section_sizes
from entrypoints.http.views import config_json, connector_json


async def get_config(call: Call) -> Response:
    key = call.app.container.catalog.get(call.params["name"]).key

    async def load() -> dict[str, Any]:
        return config_json(await call.app.container.connectors.get(call.org_id, key))

    return await answer(call, f"config:{key}", lambda: cached(call, f"config:{key}", load))


async def save_configuration(
    app: ApiState, org_id: str, user_id: str | None, name: str, body: Mapping[str, Any]
) -> ConnectorView:
    """Validate ``body`` against the connector's schema (400 naming each field) and its sections'
    sizes (413 naming each), and save it; the API's PUT and the console's form both save through here."""
    container = app.container
    entry = container.catalog.get(name)
    check(app.config_validator(entry.key), body, "configuration")
    check_section_sizes({section: body.get(section) for section in ("auth", "sync", "filters")})
    update = ConfigUpdate(
        base_url=body["baseUrl"],
        auth=body.get("auth") or {},
        sync=body.get("sync") or {},
        filters=body.get("filters") or {},
    )
    return await container.connectors.update_configuration(org_id, user_id, entry.key, update)


async def put_config(call: Call) -> Response:
    view = await save_configuration(call.app, call.org_id, call.user_id, call.params["name"], call.body)
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
