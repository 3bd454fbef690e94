"""The served OpenAPI document made exact for one deployment: an operation on ``{name}``
becomes one per connector with that connector's body schema, and the OAuth base URLs say
which origins the settings allow."""

from __future__ import annotations

import copy
from typing import Any

from connector_core.catalog import CatalogEntry
from entrypoints.bootstrap import service_origins
from entrypoints.http.connector_schemas import allowed_base_pattern, config_body, filters_body
from entrypoints.http.endpoint import Endpoint
from entrypoints.http.storable_schema import storable
from entrypoints.settings import Settings


def _json_body(op: dict[str, Any]) -> dict[str, Any] | None:
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    return body if isinstance(body, dict) else None


def for_settings(op: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``baseUrl`` of the OAuth routes narrowed to the allowed origins; the legacy code exchange
    needs one unless a legacy redirect URI is configured."""
    op = copy.deepcopy(op)
    pattern = allowed_base_pattern(settings.oauth_allowed_origins, service_origins(settings))
    for param in op["parameters"]:
        if param["name"] == "baseUrl" and param["in"] == "query":
            param["schema"] = {**param["schema"], "pattern": pattern}
    body = _json_body(op)
    if body is not None and "baseUrl" in body["schema"].get("properties", {}) and op["operationId"] != "put_config":
        schema = body["schema"] = copy.deepcopy(body["schema"])
        schema["properties"]["baseUrl"] = {**schema["properties"]["baseUrl"], "pattern": pattern}
        if op["operationId"] == "get_token_from_code" and not settings.oauth_legacy_redirect_uri:
            schema["required"] = sorted({*schema.get("required", ()), "baseUrl"})
    return op


def for_connector(op: dict[str, Any], endpoint: Endpoint, entry: CatalogEntry, settings: Settings) -> dict[str, Any]:
    """``op`` for one connector: no path parameter, its own operation id and body schema."""
    op = for_settings(op, settings)
    op["operationId"] = f"{op['operationId']}_{entry.key}"
    op["parameters"] = [p for p in op["parameters"] if p["in"] != "path"]
    op["summary"] = f"{op['summary']} ({entry.display_name})"
    body = _json_body(op)
    if body is not None and endpoint.operation_id == "put_config":
        body["schema"] = storable(config_body(entry))
    elif body is not None and endpoint.operation_id == "save_filters":
        body["schema"] = storable(filters_body(entry))
    return op
