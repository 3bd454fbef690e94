"""Routes of the HTTP API, declared once: the same declarations drive authentication, input
validation and the OpenAPI document, so they cannot drift apart."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from attrs import define, frozen
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema import ValidationError as SchemaError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector_core.errors import (
    ConnectorManagerError,
    NotFound,
    PermissionDenied,
    Unavailable,
    ValidationError,
)
from connector_core.ports.iam import Principal
from connector_core.services.connectors import ConfigUpdate
from entrypoints.http import schemas
from entrypoints.http.auth import Access, authenticate
from entrypoints.http.errors import HTTP_CODES, error_response, from_exception
from entrypoints.http.views import config_json, connector_json, filters_json

log = logging.getLogger("connector_manager.http")

MAX_BODY_BYTES = 1024 * 1024
PREFIX = "/api/v1/connectors"


class PayloadTooLarge(ConnectorManagerError):
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ConnectorManagerError):
    code = "UNSUPPORTED_MEDIA_TYPE"


@define
class Call:
    """What a handler gets: the request, who called, and validated input."""

    request: Request
    app: Any  # the ApiState: container and services (swapped as a whole on reload)
    principal: Principal | None
    params: Mapping[str, str]
    query: dict[str, Any]
    body: dict[str, Any]

    @property
    def org_id(self) -> str:
        assert self.principal is not None and self.principal.org_id is not None
        return self.principal.org_id

    @property
    def user_id(self) -> str | None:
        return None if self.principal is None else self.principal.user_id


Handler = Callable[[Call], Awaitable[Response]]


@frozen
class Endpoint:
    method: str
    path: str
    handler: Handler
    access: Access
    summary: str
    response: Mapping[str, Any]
    status: int = 200
    body: Mapping[str, Any] | None = None
    query: Mapping[str, Any] | None = None
    errors: tuple[int, ...] = ()
    tag: str = "connectors"

    @property
    def operation_id(self) -> str:
        return self.handler.__name__.strip("_")


FORMATS = FormatChecker()


@FORMATS.checks("uri", raises=ValueError)
def _is_web_uri(value: object) -> bool:
    """``format: uri`` here means an absolute http(s) URL with a host (jsonschema only checks
    it when an optional package is installed; this check is always on)."""
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in value)


def _validator(schema: Mapping[str, Any] | None) -> Draft202012Validator | None:
    if schema is None:
        return None
    return Draft202012Validator(dict(schema), format_checker=FORMATS)


def schema_errors(validator: Draft202012Validator, data: Any, root: str) -> list[dict[str, str]]:
    """Every violation, each with the dotted path of the field at fault."""
    found: list[dict[str, str]] = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        found.extend(_describe(err, root))
    return found


def _describe(err: SchemaError, root: str) -> list[dict[str, str]]:
    parts = [str(p) for p in err.absolute_path]
    base = ".".join([root, *parts]) if root else ".".join(parts)

    def at(name: str) -> str:
        return f"{base}.{name}" if base else name

    wanted: Any = err.validator_value
    schema: Any = err.schema
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [p for p in wanted if p not in err.instance]
        return [{"path": at(m), "message": "is required"} for m in missing]
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        return [{"path": at(k), "message": "is not an allowed field"} for k in extra]
    message = _safe_message(err)
    return [{"path": base or root or "body", "message": message}]


def _safe_message(err: SchemaError) -> str:
    """The violation in words, never echoing the value back (it may be a secret)."""
    value: Any = err.validator_value
    if err.validator == "minLength":
        return f"must be at least {value} characters"
    if err.validator == "maxLength":
        return f"must be at most {value} characters"
    if err.validator == "pattern":
        return "has an invalid format"
    if err.validator == "format":
        return f"must be a valid {value}"
    if err.validator == "enum":
        return f"must be one of {', '.join(map(str, value))}"
    if err.validator == "type":
        return f"must be of type {value if isinstance(value, str) else ' or '.join(value)}"
    if err.validator in {"minimum", "maximum"}:
        return f"must be {'at least' if err.validator == 'minimum' else 'at most'} {value}"
    return f"violates {err.validator}"


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > MAX_BODY_BYTES:
                raise PayloadTooLarge("request body is larger than 1 MiB")
        except ValueError:
            raise ValidationError.for_field("Content-Length", "is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge("request body is larger than 1 MiB")
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse_body(request: Request, endpoint: Endpoint) -> dict[str, Any]:
    raw = await _read_body(request)
    if endpoint.body is None:
        return {}
    if not raw.strip():
        data: Any = {}
    else:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise UnsupportedMediaType("Content-Type must be application/json")
        data = parse_json(raw)
    if not isinstance(data, dict):
        raise ValidationError.for_field("body", "must be a JSON object")
    validator = _VALIDATORS[id(endpoint)][0]
    assert validator is not None
    errors = schema_errors(validator, data, "")
    if errors:
        raise ValidationError(f"invalid request body: {errors[0]['path']} {errors[0]['message']}", errors=errors)
    return data


MAX_JSON_DEPTH = 32


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > limit:
            return level
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def parse_json(raw: bytes) -> Any:
    """Strict JSON: no NaN/Infinity, no lone surrogates, at most 32 levels deep. Anything that
    would not survive being stored and sent back is refused here, as a 400."""

    def bad(message: str) -> ValidationError:
        return ValidationError(
            f"request body is not valid JSON ({message})", errors=[{"path": "body", "message": message}]
        )

    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad("malformed JSON") from None
    except RecursionError:
        raise bad(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:  # NaN/Infinity, integers with thousands of digits
        raise bad("a number that is not a finite JSON number") from None
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise bad(f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        json.dumps(data, allow_nan=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        raise bad("text that is not valid Unicode") from None
    return data


def _parse_query(request: Request, endpoint: Endpoint) -> dict[str, Any]:
    if endpoint.query is None:
        return {}
    known = set(endpoint.query.get("properties", {}))
    # Unknown query parameters are ignored (documented): proxies add cache-busters.
    data = {k: v for k, v in request.query_params.items() if k in known}
    validator = _VALIDATORS[id(endpoint)][1]
    assert validator is not None
    errors = schema_errors(validator, data, "")
    if errors:
        raise ValidationError(f"invalid query: {errors[0]['path']} {errors[0]['message']}", errors=errors)
    return data


_VALIDATORS: dict[int, tuple[Draft202012Validator | None, Draft202012Validator | None]] = {}


def _dispatch(endpoint: Endpoint, state_getter: Callable[[], Any]) -> Callable[[Request], Awaitable[Response]]:
    _VALIDATORS[id(endpoint)] = (_validator(endpoint.body), _validator(endpoint.query))

    async def run(request: Request) -> Response:
        state = state_getter()  # one snapshot per request: a reload never changes it mid-way
        try:
            container = state.container
            principal = await authenticate(
                endpoint.access,
                request.headers.get("authorization"),
                jwt_secret=container.service_secrets.jwt_secret,
                scoped_secret=container.service_secrets.scoped_jwt_secret,
                iam=container.iam,
            )
            backend = container.backend
            if backend is not None and endpoint.tag == "connectors":
                return await _proxy(request, backend)
            call = Call(
                request=request,
                app=state,
                principal=principal,
                params=dict(request.path_params),
                query=_parse_query(request, endpoint),
                body=await _parse_body(request, endpoint),
            )
            return await endpoint.handler(call)
        except ConnectorManagerError as exc:
            status = {PayloadTooLarge: 413, UnsupportedMediaType: 415}.get(type(exc))
            if status:
                return error_response(status, exc.code, exc.message)
            if isinstance(exc, Unavailable):
                log.warning(
                    "dependency unavailable on %s %s: %s",
                    request.method,
                    endpoint.path,
                    exc.message,
                )
            return from_exception(exc)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, endpoint.path)
            return error_response(500, "INTERNAL_ERROR", "unexpected server error")

    run.__name__ = endpoint.operation_id
    return run


async def _proxy(request: Request, backend: Any) -> Response:
    """The old service's proxy mode: forward to the backend connector service (Authorization and
    Content-Type only), map its status as the old service did, pass its body through."""
    from adapters.http.backend_client import map_backend_status

    raw = await _read_body(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
    answer = await backend.forward(
        request.method, request.url.path, headers=headers, body=raw or None, query=dict(request.query_params)
    )
    status = map_backend_status(answer.status)
    if status >= 400:
        try:
            body = json.loads(answer.body or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = {}
        if not (isinstance(body, dict) and isinstance(body.get("error"), dict)):
            message = body.get("message") if isinstance(body, dict) else None
            detail = body.get("detail") if isinstance(body, dict) else None
            text = message or detail or f"connector service answered {answer.status}"
            return error_response(status, HTTP_CODES.get(status, "BACKEND_ERROR"), str(text)[:500])
        return JSONResponse(body, status_code=status)
    return Response(answer.body, status_code=status, media_type=answer.content_type or "application/json")


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


# -- handlers -------------------------------------------------------------------------------


async def _cached(call: Call, name: str, load: Callable[[], Awaitable[Any]]) -> Any:
    """Hot reads go through the read cache when one is configured; every committed change to
    the org's connectors invalidates it before the write's response is sent."""
    cache = call.app.container.read_cache
    if cache is None:
        return await load()
    return await cache.get_or_load(call.org_id, name, load)


async def _connector_list(call: Call) -> list[dict[str, Any]]:
    async def load() -> list[dict[str, Any]]:
        return [connector_json(v) for v in await call.app.container.connectors.list(call.org_id)]

    result: list[dict[str, Any]] = await _cached(call, "connectors", load)
    return result


async def list_connectors(call: Call) -> Response:
    return ok(await _connector_list(call))


async def list_active(call: Call) -> Response:
    return ok([c for c in await _connector_list(call) if c["isEnabled"]])


async def list_inactive(call: Call) -> Response:
    return ok([c for c in await _connector_list(call) if not c["isEnabled"]])


async def get_config(call: Call) -> Response:
    key = call.app.container.catalog.get(call.params["name"]).key

    async def load() -> dict[str, Any]:
        return config_json(await call.app.container.connectors.get(call.org_id, key))

    return ok(await _cached(call, f"config:{key}", load))


async def put_config(call: Call) -> Response:
    container = call.app.container
    entry = container.catalog.get(call.params["name"])
    validator = call.app.config_validator(entry.key)
    errors = schema_errors(validator, call.body, "")
    if errors:
        raise ValidationError(f"invalid configuration: {errors[0]['path']} {errors[0]['message']}", errors=errors)
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
    from connector_core.catalog import thaw

    return ok({"key": entry.key, "name": entry.display_name, "schema": thaw(entry.config_schema)})


async def toggle(call: Call) -> Response:
    view = await call.app.container.connectors.toggle(call.org_id, call.user_id, call.params["name"])
    state = "enabled" if view.connector.is_enabled else "disabled"
    return ok({"message": f"{view.entry.display_name} {state}", "connector": connector_json(view)})


async def get_filters(call: Call) -> Response:
    view = await call.app.container.connectors.get(call.org_id, call.params["name"])
    return ok(filters_json(view))


async def save_filters(call: Call) -> Response:
    view = await call.app.container.connectors.save_filters(
        call.org_id, call.user_id, call.params["name"], call.body["filterOptions"]
    )
    return ok(filters_json(view))


def _oauth(call: Call) -> Any:
    return call.app.container.oauth


async def oauth_authorize(call: Call) -> Response:
    url = await _oauth(call).authorization_url(call.org_id, call.user_id, call.params["name"], call.query["baseUrl"])
    return ok({"authorizationUrl": url})


async def oauth_callback(call: Call) -> Response:
    q = call.query
    if not q.get("error") and (not q.get("code") or not q.get("state")):
        raise ValidationError(
            "Code and state are required",
            errors=[{"path": p, "message": "is required"} for p in ("code", "state") if not q.get(p)],
        )
    result = await _oauth(call).handle_callback(
        call.org_id,
        call.user_id,
        call.params["name"],
        code=q.get("code"),
        state=q.get("state"),
        error=q.get("error"),
        error_description=q.get("error_description"),
        base_url=q["baseUrl"],
    )
    return ok(
        {
            "redirectUrl": result.redirect_url,
            "authenticated": result.authenticated,
            "reason": result.reason,
            "connector": connector_json(result.connector),
        }
    )


async def get_token_from_code(call: Call) -> Response:
    principal = call.principal
    assert principal is not None
    if not principal.email:
        raise PermissionDenied("the user token has no email to compare with the Google account")
    view, created = await _oauth(call).token_from_code(
        call.org_id, call.user_id, principal.email, call.body["tempCode"], call.body.get("baseUrl")
    )
    return ok(connector_json(view), status=201 if created else 200)


async def revoke_tokens(call: Call) -> Response:
    view = await _oauth(call).revoke(call.org_id, call.user_id, call.params["name"])
    return ok({"message": f"{view.entry.display_name} tokens revoked", "connector": connector_json(view)})


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
    from entrypoints.http.views import iso

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
    from adapters.event_wire import envelope

    return ok({"events": [envelope(m) for m in messages]})


async def update_app_config(call: Call) -> Response:
    generation, keys = await call.app.reload()
    return ok(
        {
            "message": "Application configuration reloaded",
            "generation": generation,
            "connectors": keys,
        }
    )


async def health(call: Call) -> Response:
    checks = call.app.container.health_checks

    async def probe(check: Any) -> tuple[str, str, bool]:
        try:
            healthy = await asyncio.wait_for(check.check(), timeout=call.app.health_timeout)
        except (TimeoutError, Exception):
            healthy = False
        return check.name, "healthy" if healthy else "unhealthy", check.required

    results = await asyncio.gather(*(probe(c) for c in checks))
    services = {name: state for name, state, _ in results}
    down = any(state != "healthy" and required for _, state, required in results)
    body = {
        "status": "unhealthy" if down else "healthy",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "services": services,
    }
    return ok(body, status=503 if down else 200)


NAME = "{name}"

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        f"{PREFIX}/",
        list_connectors,
        Access.ADMIN,
        "List every connector of the caller's org (catalog entries not yet configured included)",
        {"$ref": "#/components/schemas/ConnectorList"},
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/active",
        list_active,
        Access.USER,
        "List the org's enabled connectors",
        {"$ref": "#/components/schemas/ConnectorList"},
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/inactive",
        list_inactive,
        Access.USER,
        "List the org's disabled connectors",
        {"$ref": "#/components/schemas/ConnectorList"},
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/config/{NAME}",
        get_config,
        Access.ADMIN,
        "Read a connector's configuration (secrets masked as has<Field>)",
        {"$ref": "#/components/schemas/ConnectorConfig"},
        errors=(404,),
    ),
    Endpoint(
        "PUT",
        f"{PREFIX}/config/{NAME}",
        put_config,
        Access.ADMIN,
        "Replace a connector's configuration; secrets are write-only, omitted ones kept",
        schemas.CONFIG_SAVED,
        body=schemas.CONFIG_BODY,
        errors=(400, 404, 409, 413, 415),
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/schema/{NAME}",
        get_schema,
        Access.ADMIN,
        "The JSON Schema of a connector's configuration",
        schemas.SCHEMA_VIEW,
        errors=(404,),
    ),
    Endpoint(
        "POST",
        f"{PREFIX}/toggle/{NAME}",
        toggle,
        Access.ADMIN,
        "Enable a disabled connector or disable an enabled one (emits appEnabled/appDisabled)",
        schemas.TOGGLE_VIEW,
        errors=(400, 404, 409),
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/{NAME}/oauth/authorize",
        oauth_authorize,
        Access.ADMIN,
        "Build the provider's authorization URL (state + PKCE kept server-side)",
        schemas.AUTHORIZE_VIEW,
        query=schemas.AUTHORIZE_QUERY,
        errors=(400, 404),
        tag="oauth",
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/{NAME}/oauth/callback",
        oauth_callback,
        Access.ADMIN,
        "Finish the authorization: exchange the code, store the tokens",
        schemas.CALLBACK_VIEW,
        query=schemas.CALLBACK_QUERY,
        errors=(400, 404, 502, 503),
        tag="oauth",
    ),
    Endpoint(
        "POST",
        f"{PREFIX}/getTokenFromCode",
        get_token_from_code,
        Access.ADMIN,
        "Legacy Google Workspace code exchange (201 new connector, 200 existing)",
        {"$ref": "#/components/schemas/Connector"},
        body=schemas.TEMP_CODE_BODY,
        errors=(400, 403, 413, 415, 502, 503),
        tag="oauth",
    ),
    Endpoint(
        "POST",
        f"{PREFIX}/{NAME}/oauth/revoke",
        revoke_tokens,
        Access.ADMIN,
        "Revoke a connector's tokens at the provider and forget them (409 while a refresh holds the token)",
        schemas.TOGGLE_VIEW,
        errors=(404, 409),
        tag="oauth",
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/filters/{NAME}",
        get_filters,
        Access.ADMIN,
        "The saved filter selection and the filters available",
        schemas.FILTERS_VIEW,
        errors=(404,),
    ),
    Endpoint(
        "POST",
        f"{PREFIX}/filters/{NAME}",
        save_filters,
        Access.ADMIN,
        "Save a filter selection (validated against the catalog)",
        schemas.FILTERS_VIEW,
        body=schemas.FILTERS_BODY,
        errors=(400, 404, 413, 415),
    ),
    Endpoint(
        "POST",
        f"{PREFIX}/internal/refreshIndividualConnectorToken",
        refresh_token,
        Access.SCOPED,
        "Refresh a connector's token now",
        schemas.MESSAGE,
        body=schemas.REFRESH_BODY,
        errors=(400, 404, 409, 502, 503),
        tag="internal",
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/internal/credentials/{NAME}",
        get_credentials,
        Access.SCOPED,
        "A fresh access token for a connector (refreshed first when due)",
        schemas.CREDENTIALS_VIEW,
        query=schemas.CREDENTIALS_QUERY,
        errors=(400, 404, 409, 502, 503),
        tag="internal",
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/internal/events",
        recent_events,
        Access.SCOPED,
        "The newest events of the outbox (for deployments without Kafka)",
        schemas.EVENTS_VIEW,
        query=schemas.EVENTS_QUERY,
        tag="internal",
    ),
    Endpoint(
        "POST",
        f"{PREFIX}/updateAppConfig",
        update_app_config,
        Access.SCOPED,
        "Reload the application configuration (no secret in the reply)",
        schemas.RELOAD_VIEW,
        body={"type": "object"},
        tag="internal",
    ),
    Endpoint(
        "GET",
        "/api/v1/health",
        health,
        Access.PUBLIC,
        "Health of the service and each dependency (503 when a required one is down)",
        {"$ref": "#/components/schemas/Health"},
        errors=(503,),
        tag="health",
    ),
)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    message = {404: f"no route for {request.url.path[:200]}", 405: "method not allowed"}.get(
        exc.status_code, str(exc.detail)
    )
    return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}))


async def server_error(request: Request, exc: Exception) -> Response:
    return error_response(500, "INTERNAL_ERROR", "unexpected server error")


def routes(state_getter: Callable[[], Any]) -> list[Route]:
    return [Route(e.path, _dispatch(e, state_getter), methods=[e.method], name=e.operation_id) for e in ENDPOINTS]


__all__ = ["ENDPOINTS", "Endpoint", "NotFound", "Starlette", "http_error", "routes", "server_error"]
