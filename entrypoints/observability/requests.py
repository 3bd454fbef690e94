"""Watches every HTTP request once, as a pure ASGI middleware (no per-request objects beyond a
closure; the body streams through untouched): its route template, method, status and duration
go to the metrics."""

from __future__ import annotations

import time
from typing import Any

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from entrypoints.observability.metrics import Metrics

#: the route label of a request no route matched (a 404 for an unknown path)
UNMATCHED = "unmatched"


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
        status = 500  # what the client gets when the app fails before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe_request(
                route_template(scope, root_path), scope["method"], status, time.perf_counter() - started
            )
