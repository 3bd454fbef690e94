"""Background work: the token refresher loop, the outbox relay, configuration reload."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from entrypoints.bootstrap import Container, build_container
from entrypoints.settings import Settings, load_settings

log = logging.getLogger("connector_manager.worker")

Task = Callable[[Container, asyncio.Event], Coroutine[Any, Any, None]]


async def refresher_loop(container: Container, stop: asyncio.Event) -> None:
    refresher = container.extras.get("refresher")
    if refresher is None:
        await stop.wait()
        return
    settings = container.settings
    await refresher.run_forever(
        settings.refresh_interval_seconds,
        stop,
        batch_size=settings.refresh_batch_size,
        concurrency=settings.refresh_concurrency,
    )


def background_tasks(settings: Settings) -> list[Task]:
    tasks: list[Task] = []
    if settings.run_refresher:
        tasks.append(refresher_loop)
    return tasks


async def run_worker(container: Container, *, once: bool = False) -> None:
    stop = asyncio.Event()
    if once:
        # drain: pass after pass until a pass finds nothing to do (bounded)
        refresher = container.extras.get("refresher")
        if refresher is not None:
            for _ in range(100):
                report = await refresher.run_once(
                    container.settings.refresh_batch_size, container.settings.refresh_concurrency
                )
                if report.total == 0:
                    break
        return
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await asyncio.gather(*(task(container, stop) for task in background_tasks(container.settings)))


async def reload_container(old: Container) -> Container:
    """Re-read the settings file and environment and build a fresh container. The old one
    stays alive for requests in flight and is closed by the garbage of its last user."""
    settings = load_settings(old.settings.config_file, data_dir=old.settings.data_dir)
    # Storage is kept: its connections serve both generations (and memory cannot be rebuilt).
    return await build_container(settings, storage=old.storage, iam=old.iam)
