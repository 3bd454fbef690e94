"""OpenAPI 3.1 document generated from the route declarations that also drive validation."""

from __future__ import annotations

import re
from typing import Any

from entrypoints.http import schemas
from entrypoints.http.auth import Access
from entrypoints.http.endpoint import Endpoint
from entrypoints.http.errors import ERROR_SCHEMA
from entrypoints.http.routes import ENDPOINTS

_ERROR_TEXT = {
    400: "Invalid input (VALIDATION_ERROR lists each field path)",
    401: "Missing, malformed, expired or wrongly signed token",
    403: "Not allowed (not an admin, missing scope)",
    404: "Unknown connector or resource",
    409: "Concurrent change or state conflict (IDEMPOTENCY_KEY_IN_USE: a request with the key is running)",
    413: "Body larger than 1 MiB",
    415: "Content-Type is not application/json",
    422: "The Idempotency-Key was used for another request (IDEMPOTENCY_KEY_REUSED)",
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
    if endpoint.method != "GET":
        errors |= {400, 409, 422}  # a malformed key, a key still in use, a key used for another request
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
            "content": {"application/json": {"schema": endpoint.body}},
        }
    return op


def openapi_document(container: Any = None) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = {
        "Error": ERROR_SCHEMA,
        "ConnectorList": schemas.CONNECTOR_LIST,
        **schemas.COMPONENTS,
    }
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, components)
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
