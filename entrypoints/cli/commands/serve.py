"""``connector-manager serve``: the HTTP API, and the background tasks that go with it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

from entrypoints.bootstrap import build_container
from entrypoints.cli.options import add_settings_options
from entrypoints.settings import Settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    p = commands.add_parser("serve", help="run the HTTP API (and the token refresher)")
    add_settings_options(p)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(serve(settings))
    return 0


async def serve(settings: Settings) -> None:
    import uvicorn

    from entrypoints.http.app import create_app
    from entrypoints.workers import announce, reload_container, serve_tasks

    container = await build_container(settings)
    tasks = serve_tasks(settings)
    announce("serve", tasks)
    app = create_app(
        container,
        reloader=reload_container,
        lifespan_tasks=tasks,
        close_on_shutdown=True,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    # uvicorn handles SIGINT/SIGTERM itself, then re-raises the signal to the handler that was
    # there before; a no-op handler makes a requested shutdown exit 0 instead of dying by signal.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    await server.serve()  # the lifespan closes every generation's connections on the way out
    if not server.started:  # start-up failed before the lifespan could close anything
        with contextlib.suppress(Exception):
            await container.aclose()
