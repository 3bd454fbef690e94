"""OpenAPI 3.1 document generated from the route declarations that also drive validation."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from entrypoints.http import schemas
from entrypoints.http.auth import Access
from entrypoints.http.endpoint import Endpoint
from entrypoints.http.errors import ERROR_SCHEMA
from entrypoints.http.openapi_specialise import for_connector, for_settings
from entrypoints.http.routes import ENDPOINTS, endpoints_for
from entrypoints.http.storable_schema import STORABLE_VALUE, STORABLE_VALUE_SCHEMA, storable

if TYPE_CHECKING:
    from entrypoints.bootstrap import Container

_ERROR_TEXT = {
    400: "Invalid input (VALIDATION_ERROR lists each field path)",
    401: "Missing, malformed, expired or wrongly signed token, or the other kind of token (the message says"
    " which kind the route needs)",
    403: "Not allowed (not an admin, missing scope)",
    404: "Unknown connector or resource",
    409: "Refused in the current state (not configured, disabled), a concurrent change, or an Idempotency-Key"
    " still in use or used for another request",
    408: "The request body did not arrive within 10 s",
    413: "Body larger than 1 MiB, or a configuration section (auth, sync, filters) or filterOptions larger"
    " than 64 KiB as JSON (the error names it)",
    415: "Content-Type is not application/json",
    500: "Unexpected error",
    502: "The OAuth provider failed",
    503: "A dependency is unavailable",
}


def _security(endpoint: Endpoint) -> list[dict[str, list[str]]]:
    if endpoint.access is Access.PUBLIC:
        return []
    if endpoint.access is Access.SCOPED:
        return [{"scopedToken": ["fetch:config"]}]
    return [{"userToken": []}]


def _operation(endpoint: Endpoint, components: dict[str, Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": schemas.NAME_PARAM,
            "description": "Connector key or alias, matched case-insensitively",
        }
        for name in re.findall(r"{(\w+)}", endpoint.path)
    ]
    if endpoint.query:
        required = set(endpoint.query.get("required", ()))
        params += [
            {"name": name, "in": "query", "required": name in required, "schema": schema}
            for name, schema in endpoint.query.get("properties", {}).items()
        ]
    if endpoint.method != "GET":
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
                "description": "Retry safely: a success or a server error is kept for a day (per org) and "
                "replayed with Idempotent-Replayed: true; a refusal (4xx) is not kept.",
            }
        )
    errors = {401, 403} if endpoint.access is not Access.PUBLIC else set()
    # every route reads its body (the size and time limits hold for all): 408, 413; a malformed
    # Content-Length is 400
    errors |= {400, 408, 413}
    if endpoint.body is not None:
        errors.add(415)
    if endpoint.method != "GET":
        errors.add(409)  # an Idempotency-Key still in use or used for another request
    # every route may meet an unexpected error (500) or a dependency that is down (503)
    errors |= set(endpoint.errors) | {500, 503}
    if endpoint.access is Access.USER:
        errors.discard(403)
    responses: dict[str, Any] = {
        str(endpoint.status): {
            "description": "OK",
            "content": {"application/json": {"schema": endpoint.response}},
        }
    }
    if endpoint.handler.__name__ == "get_token_from_code":
        responses["201"] = {
            "description": "Created (the connector is new)",
            "content": {"application/json": {"schema": endpoint.response}},
        }
    for status in sorted(errors):
        responses[str(status)] = {
            "description": _ERROR_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    if "401" in responses:
        responses["401"]["headers"] = {
            "WWW-Authenticate": {
                "required": True,
                "description": 'Bearer realm="connector-manager", with error="invalid_token" when a token was refused',
                "schema": {"type": "string", "pattern": "^Bearer realm="},
            }
        }
    op: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": params,
        "responses": responses,
        "security": _security(endpoint),
    }
    if endpoint.body is not None:
        op["requestBody"] = {
            "required": "required" in endpoint.body,
            "content": {"application/json": {"schema": storable(endpoint.body)}},
        }
    return op


def openapi_document(container: Container | None = None) -> dict[str, Any]:
    """The document. Without a container (docs/api.md): ``{name}`` routes once, generic. With
    the serving container (``GET /openapi.json``): one path per connector of its catalog, each
    with that connector's configuration and filter schemas, and the OAuth base URLs its
    settings allow, so the document says exactly what this deployment accepts."""
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = {
        "Error": ERROR_SCHEMA,
        "ConnectorList": schemas.CONNECTOR_LIST,
        **schemas.COMPONENTS,
        STORABLE_VALUE: STORABLE_VALUE_SCHEMA,
    }
    for endpoint in ENDPOINTS if container is None else endpoints_for(container.settings):
        if container is not None and "{name}" in endpoint.path:
            for entry in container.catalog:
                path = endpoint.path.replace("{name}", entry.key)
                paths.setdefault(path, {})[endpoint.method.lower()] = for_connector(
                    _operation(endpoint, components), endpoint, entry, container.settings
                )
            continue
        op = _operation(endpoint, components)
        if container is not None:
            op = for_settings(op, container.settings)
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Connector Manager API",
            "version": "1.0.0",
            "description": "Owns OAuth tokens and connector configurations. Unknown body "
            "fields are rejected (400); unknown query parameters are ignored.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "userToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT (HS256; claims userId, orgId, email, exp)",
                },
                "scopedToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT (HS256, scoped secret; scopes contains fetch:config)",
                },
            },
        },
    }
