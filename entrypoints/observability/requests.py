"""Watches every HTTP request once, as a pure ASGI middleware (no per-request objects beyond a
closure and a :class:`RequestInfo`; the body streams through untouched): it gives the request
its id (the client's ``X-Request-ID`` when safe, else a new one), returns that id in the
response's ``X-Request-ID``, has it on every log line of the request, and at the end writes one
access line and counts the request in the metrics (route template, method, status, duration)."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from entrypoints.observability.metrics import Metrics
from entrypoints.observability.request_context import RequestInfo, current_request, request_id_from

access_log = logging.getLogger("connector_manager.access")

#: the route label of a request no route matched (a 404 for an unknown path)
UNMATCHED = "unmatched"
HEADER = b"x-request-id"


def route_template(scope: Scope, root_path: str) -> str:
    """The template of the route that served ``scope`` (``/api/v1/connectors/config/{name}``),
    never the path itself: mounts add their prefix, an app mounted whole is ``prefix/{path}``."""
    route: Any = scope.get("route")
    if route is None:
        return UNMATCHED
    prefix = str(scope.get("root_path", ""))[len(root_path) :]
    if isinstance(route, Mount):
        return prefix + "/{path}"  # the mount's own path is in root_path already
    return prefix + str(getattr(route, "path", ""))


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


class ObserveRequests:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = str(scope.get("root_path", ""))
        info = RequestInfo(request_id_from(_header(scope, HEADER)))
        token = current_request.set(info)
        echoed = info.request_id.encode("ascii")
        status = 500  # what the client gets when the app fails before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", ()), (HEADER, echoed)]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope, root_path)
            method = str(scope["method"])
            self.metrics.observe_request(route, method, status, seconds)
            if access_log.isEnabledFor(logging.INFO):
                millis = round(seconds * 1000, 1)
                access_log.info(
                    "%s %s %d %.1fms",
                    method,
                    route,
                    status,
                    millis,
                    extra={
                        "fields": {
                            "method": method,
                            "route": route,
                            "status": status,
                            "duration_ms": millis,
                            "org": info.org,
                        }
                    },
                )
            current_request.reset(token)
