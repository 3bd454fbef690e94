"""One request through one route: authenticate, proxy or validate, run the handler, and turn
every failure into the error body (the status comes from the table in :mod:`errors`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from connector_core.deadline import REQUEST_BUDGET_SECONDS, deadline
from connector_core.errors import ConnectorManagerError, Unavailable
from entrypoints import compat
from entrypoints.http.auth import authenticate
from entrypoints.http.endpoint import Call, Endpoint
from entrypoints.http.errors import HTTP_CODES, error_response, from_exception
from entrypoints.http.idempotency import idempotency_key, run_once
from entrypoints.http.proxy import proxy
from entrypoints.http.state import ApiState
from entrypoints.http.validation import (
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    make_validator,
    parse_body,
    parse_query,
)
from entrypoints.observability.request_context import note_org

log = logging.getLogger("connector_manager.http")

#: errors of the HTTP layer itself (the core's are in errors.STATUS_TABLE)
HTTP_LAYER_STATUS: dict[type[ConnectorManagerError], int] = {
    RequestTimeout: 408,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
}

StateGetter = Callable[[], ApiState]
RequestHandler = Callable[[Request], Awaitable[Response]]


def dispatch(endpoint: Endpoint, state_getter: StateGetter) -> RequestHandler:
    body_validator = make_validator(endpoint.body)
    query_validator = make_validator(endpoint.query)

    async def run(request: Request) -> Response:
        with deadline(REQUEST_BUDGET_SECONDS):  # one budget for every dependency call of the request
            return await serve(request)

    async def serve(request: Request) -> Response:
        state = state_getter()  # one snapshot per request: a reload never changes it mid-way
        try:
            container = state.container
            principal = await authenticate(
                endpoint.access,
                request.headers.get("authorization"),
                jwt_secret=container.service_secrets.jwt_secret,
                scoped_secret=container.service_secrets.scoped_jwt_secret,
                iam=container.iam,
                scoped_without_expiry=compat.enabled(container.settings),
            )
            if principal is not None:
                note_org(principal.org_id)  # for the request's access line
            backend = container.backend
            if backend is not None and endpoint.tag == "connectors":
                return await proxy(
                    request, backend, state.body_timeout, rename_base_url=compat.enabled(container.settings)
                )
            call = Call(
                request=request,
                app=state,
                principal=principal,
                params=dict(request.path_params),
                query=parse_query(request, endpoint.query, query_validator),
                body=await parse_body(request, body_validator, state.body_timeout),
            )
            key = idempotency_key(call) if endpoint.method != "GET" else None
            if key is not None:
                return await run_once(call, key, endpoint.handler)
            return await endpoint.handler(call)
        except ConnectorManagerError as exc:
            status = HTTP_LAYER_STATUS.get(type(exc))
            if status:
                # the rest of an unread body cannot be skipped: the connection ends with the answer
                headers = {"Connection": "close"} if status in (408, 413) else None
                return error_response(status, exc.code, exc.message, exc.metadata or None, headers=headers)
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


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    message = {404: f"no route for {request.url.path[:200]}", 405: "method not allowed"}.get(
        exc.status_code, str(exc.detail)
    )
    return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}))


async def server_error(request: Request, exc: Exception) -> Response:
    return error_response(500, "INTERNAL_ERROR", "unexpected server error")
