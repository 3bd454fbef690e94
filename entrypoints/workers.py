"""Background work: the token refresher loop, the outbox relay, configuration reload."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from entrypoints.bootstrap import Container, build_container, infra_key
from entrypoints.settings import Settings, load_settings

log = logging.getLogger("connector_manager.worker")

Task = Callable[[Container, asyncio.Event], Coroutine[Any, Any, None]]


async def refresher_loop(container: Container, stop: asyncio.Event) -> None:
    settings = container.settings
    await container.refresher.run_forever(
        settings.refresh_interval_seconds,
        stop,
        batch_size=settings.refresh_batch_size,
        concurrency=settings.refresh_concurrency,
    )


async def relay_loop(container: Container, stop: asyncio.Event) -> None:
    relay = container.relay
    if relay is None:
        await stop.wait()
        return
    await relay.run_forever(container.settings.relay_interval_seconds, stop)


async def config_watch_loop(container: Container, stop: asyncio.Event) -> None:
    """With etcd, reload when another process changes the run-time configuration key."""
    infra = container.infrastructure
    holder = container.holder
    if infra.etcd_client is None or holder is None:
        await stop.wait()
        return
    from adapters.etcd import EtcdConfigWatcher

    async def reload() -> None:
        generation, _ = await holder.reload()
        log.info("configuration changed in etcd: generation %d is live", generation)

    settings = container.settings
    async with EtcdConfigWatcher(infra.etcd_client, settings.etcd_namespace + settings.etcd_config_key, reload):
        await stop.wait()


async def outbox_prune_loop(container: Container, stop: asyncio.Event) -> None:
    """Keep the outbox bounded: the newest ``outbox_keep`` events stay (for the events route);
    with Kafka, an event is only ever removed after it was published."""
    settings = container.settings
    while not stop.is_set():
        try:
            removed = await container.storage.outbox.prune(
                settings.outbox_keep, published_only=settings.events == "kafka"
            )
            if removed:
                log.info("outbox pruned: %d old events removed", removed)
        except Exception as exc:  # a maintenance pass never stops the loop
            log.warning("outbox prune failed (%s)", type(exc).__name__)
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.outbox_prune_interval_seconds)
        except TimeoutError:
            pass


def background_tasks(settings: Settings) -> list[Task]:
    tasks: list[Task] = [outbox_prune_loop]
    if settings.secrets == "etcd":
        tasks.append(config_watch_loop)
    if settings.run_refresher:
        tasks.append(refresher_loop)
    if settings.events == "kafka":
        tasks.append(relay_loop)
    return tasks


async def run_worker(container: Container, *, once: bool = False) -> None:
    if once:
        # drain: pass after pass until a pass finds nothing to do (bounded)
        for _ in range(100):
            report = await container.refresher.run_once(
                container.settings.refresh_batch_size, container.settings.refresh_concurrency
            )
            if report.total == 0:
                break
        relay = container.relay
        if relay is not None:
            await relay.drain()
        return
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await asyncio.gather(*(task(container, stop) for task in background_tasks(container.settings)))


async def reload_container(old: Container) -> Container:
    """Re-read the settings file, the environment and the run-time overrides in the key-value
    store, and build the next generation. Connections are shared unless a connection setting
    changed; the application retires the old generation once requests in flight are done."""
    settings = load_settings(old.settings.config_file, data_dir=old.settings.data_dir)
    infra = old.infrastructure
    shared = infra_key(settings) == infra.key or settings.storage == "memory"
    return await build_container(settings, infrastructure=infra if shared else None, iam=old.iam)
