"""The Starlette application: routes, error handlers, reload without dropping requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from jsonschema import Draft202012Validator
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector_core.catalog import thaw
from entrypoints.bootstrap import Container
from entrypoints.http.api import FORMATS, http_error, routes, server_error
from entrypoints.http.openapi import openapi_document

log = logging.getLogger("connector_manager.http")

Reloader = Callable[[Container], Awaitable[Container]]


class ApiState:
    """What a request works with. Replaced as a whole on reload; a request keeps the one it
    started with, so nothing in flight sees half a configuration."""

    def __init__(self, container: Container, reloader: Reloader | None = None) -> None:
        self.container = container
        self._reloader = reloader
        self._validators: dict[str, Draft202012Validator] = {}
        self.health_timeout = 2.0

    def config_validator(self, key: str) -> Draft202012Validator:
        found = self._validators.get(key)
        if found is None:
            entry = self.container.catalog.get(key)
            found = Draft202012Validator(thaw(entry.config_schema), format_checker=FORMATS)
            self._validators[key] = found
        return found

    async def reload(self) -> tuple[int, list[str]]:
        holder: AppHolder = self.container.extras["holder"]
        return await holder.reload()


class AppHolder:
    """Holds the current :class:`ApiState`; ``reload`` builds a new one and swaps it in."""

    def __init__(self, container: Container, reloader: Reloader | None) -> None:
        self._reloader = reloader
        self._lock = asyncio.Lock()
        self.state = ApiState(container, reloader)
        container.extras["holder"] = self

    def current(self) -> ApiState:
        return self.state

    async def reload(self) -> tuple[int, list[str]]:
        async with self._lock:
            old = self.state.container
            if self._reloader is None:
                new = old
            else:
                new = await self._reloader(old)
                new.generation = old.generation + 1
                new.extras["holder"] = self
            self.state = ApiState(new, self._reloader)
            return new.generation, list(new.catalog.keys)


def create_app(
    container: Container,
    *,
    reloader: Reloader | None = None,
    lifespan_tasks: list[Callable[[Container, asyncio.Event], Coroutine[Any, Any, None]]] | None = None,
) -> Starlette:
    holder = AppHolder(container, reloader)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(holder.current().container))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(t(holder.current().container, stop)) for t in lifespan_tasks or []]
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    handlers: dict[Any, Any] = {HTTPException: http_error, Exception: server_error}
    app = Starlette(
        routes=[*routes(holder.current), Route("/openapi.json", openapi, methods=["GET"])],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.holder = holder
    return app
