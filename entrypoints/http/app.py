"""The Starlette application: routes, error handlers, reload without dropping requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from entrypoints.bootstrap import Container
from entrypoints.console import console_routes
from entrypoints.http.dispatch import http_error, server_error
from entrypoints.http.explorer import METRICS_PATH, explorer_routes
from entrypoints.http.openapi import openapi_document
from entrypoints.http.routes import endpoints_for, routes
from entrypoints.http.state import DEFAULT_BODY_TIMEOUT_SECONDS, ApiState
from entrypoints.observability.metrics import CONTENT_TYPE, Metrics
from entrypoints.observability.requests import ObserveRequests
from entrypoints.settings import Settings

log = logging.getLogger("connector_manager.http")

Reloader = Callable[[Container], Awaitable[Container]]


BackgroundTask = Callable[[Container, asyncio.Event], Coroutine[Any, Any, None]]


class BackgroundRunner:
    """The background loops of one generation (refresher, relay, config watch)."""

    def __init__(self, tasks: list[BackgroundTask], grace_seconds: float = 20.0) -> None:
        self._factories = tasks
        self._grace = grace_seconds
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, container: Container) -> None:
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(make(container, self._stop)) for make in self._factories]

    async def stop(self) -> None:
        """Ask the loops to finish their pass (a refresh in flight commits its rotated token),
        and cancel only what is still running after the grace period."""
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self._grace)
        for task in pending:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class AppHolder:
    """Holds the current :class:`ApiState`; ``reload`` builds the next generation, swaps it in,
    moves the background loops onto it and retires the old one once requests in flight are done."""

    def __init__(
        self,
        container: Container,
        reloader: Reloader | None,
        runner: BackgroundRunner | None = None,
        retire_after_seconds: float = 30.0,
        body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS,
        on_generation: Callable[[Container], None] | None = None,
    ) -> None:
        self._reloader = reloader
        #: told of every generation that goes live (the first included)
        self._on_generation = on_generation
        self._lock = asyncio.Lock()
        self._body_timeout = body_timeout_seconds
        self.state = ApiState(container, body_timeout=body_timeout_seconds)
        self.runner = runner
        self._retire_after = retire_after_seconds
        self._retiring: dict[asyncio.Task[None], Container] = {}
        self._restarts: set[asyncio.Task[None]] = set()
        container.holder = self
        if on_generation is not None:
            on_generation(container)

    def current(self) -> ApiState:
        return self.state

    def live_settings(self) -> Settings:
        return self.state.container.settings

    async def reload(self) -> tuple[int, list[str]]:
        async with self._lock:
            old = self.state.container
            if self._reloader is None:
                return old.generation, list(old.catalog.keys)
            new = await self._reloader(old)
            new.generation = old.generation + 1
            new.holder = self
            if self._on_generation is not None:
                self._on_generation(new)
            self.state = ApiState(new, body_timeout=self._body_timeout)
            if self.runner is not None:
                # not awaited here: the config watcher itself may be the caller
                restart = asyncio.create_task(self._restart(new))
                self._restarts.add(restart)
                restart.add_done_callback(self._restarts.discard)
            retire = asyncio.create_task(self._retire(old, new))
            self._retiring[retire] = old
            retire.add_done_callback(lambda t: self._retiring.pop(t, None))
            return new.generation, list(new.catalog.keys)

    async def _restart(self, container: Container) -> None:
        assert self.runner is not None
        await self.runner.stop()
        if self.state.container is container:
            self.runner.start(container)

    @staticmethod
    def _shares_infrastructure(old: Container, new: Container) -> bool:
        return old.infrastructure is new.infrastructure

    async def _retire(self, old: Container, new: Container) -> None:
        await asyncio.sleep(self._retire_after)
        await old.aclose(infrastructure=not self._shares_infrastructure(old, new))

    async def aclose(self) -> None:
        """Shutdown: stop the loops gracefully, close retired generations now, then the current."""
        for task in list(self._restarts):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.runner is not None:
            await self.runner.stop()
        current = self.state.container
        for task, old in list(self._retiring.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await old.aclose(infrastructure=not self._shares_infrastructure(old, current))
        self._retiring.clear()
        await current.aclose()


def create_app(
    container: Container,
    *,
    reloader: Reloader | None = None,
    lifespan_tasks: list[BackgroundTask] | None = None,
    close_on_shutdown: bool = False,
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS,
    metrics: Metrics | None = None,
) -> Starlette:
    """The ASGI application. ``lifespan_tasks`` run in the background while it serves (and move
    to each new generation on reload); with ``close_on_shutdown`` the lifespan also closes every
    generation's connections when the server stops. A request body that has not fully arrived
    ``body_timeout_seconds`` after the route began reading it is answered 408. ``metrics``
    (default: new ones) count this app's requests and refreshes, served at ``/metrics``."""
    metrics = metrics or Metrics()
    runner = BackgroundRunner(lifespan_tasks or [])
    holder = AppHolder(
        container, reloader, runner, body_timeout_seconds=body_timeout_seconds, on_generation=metrics.instrument
    )
    metrics.read_stores(lambda: holder.current().container)

    def document() -> dict[str, Any]:
        return openapi_document(holder.current().container)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document())

    async def scrape(request: Request) -> Response:
        # unauthenticated, like the health route: nothing in it names an org or carries a secret
        return Response(await metrics.render(), media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runner.start(holder.current().container)
        try:
            yield
        finally:
            if close_on_shutdown:
                await holder.aclose()
            else:
                await runner.stop()

    handlers: dict[Any, Any] = {HTTPException: http_error, Exception: server_error}
    app = Starlette(
        routes=[
            *routes(holder.current, endpoints_for(container.settings)),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route(METRICS_PATH, scrape, methods=["GET"]),
            *explorer_routes(document),
            *console_routes(holder.current),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
        middleware=[Middleware(ObserveRequests, metrics=metrics)],
    )
    app.state.holder = holder
    app.state.metrics = metrics
    return app
