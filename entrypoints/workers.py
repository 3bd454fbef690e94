"""Background work: the token refresher loop, the outbox relay, configuration reload."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from attrs import fields, frozen

from connector_core.services.refresh_outcomes import RefreshReport
from entrypoints.bootstrap import Container, build_container
from entrypoints.infrastructure import connection_key
from entrypoints.overrides import RELOADABLE
from entrypoints.relay_runner import run_relay
from entrypoints.settings import Settings, load_settings
from entrypoints.start_failure import CouldNotStart

if TYPE_CHECKING:
    from entrypoints.observability.metrics import Metrics

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
    await run_relay(relay, container.settings.relay_interval_seconds, stop)


async def config_watch_loop(container: Container, stop: asyncio.Event) -> None:
    """With etcd, reload when another process changes the run-time configuration key."""
    etcd = container.infrastructure.etcd
    holder = container.holder
    if etcd is None or holder is None:
        await stop.wait()
        return

    async def reload() -> None:
        before = container.settings
        generation, _ = await holder.reload()
        changed = sorted(name for name in RELOADABLE if getattr(before, name) != getattr(holder.live_settings(), name))
        log.info(
            "configuration changed in etcd: generation %d is live (changed: %s)",
            generation,
            ", ".join(changed) or "nothing reloadable",
        )

    async with etcd.config_watcher(container.settings.etcd_config_key, reload):
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


def _tasks(settings: Settings, *, refresh: bool) -> list[Task]:
    tasks: list[Task] = [outbox_prune_loop]
    if settings.secrets == "etcd":
        tasks.append(config_watch_loop)
    if refresh:
        tasks.append(refresher_loop)
    if settings.events == "kafka":
        tasks.append(relay_loop)
    return tasks


def serve_tasks(settings: Settings) -> list[Task]:
    """What ``serve`` runs beside the API: the refresher only while ``run_refresher`` is on."""
    return _tasks(settings, refresh=settings.run_refresher)


def worker_tasks(settings: Settings) -> list[Task]:
    """What ``worker`` runs: it always refreshes (``run_refresher`` is the switch of ``serve``)."""
    return _tasks(settings, refresh=True)


def announce(process: str, tasks: list[Task]) -> None:
    """One start-up line saying what this process does in the background; a process that
    refreshes no token says so, and where the refresh should run instead."""
    names = ", ".join(_NAMES[t] for t in tasks)
    log.info("%s: running %s", process, names)
    if refresher_loop not in tasks:
        log.warning(
            "%s: refreshes no tokens here (run_refresher = false); run `connector-manager worker` for that",
            process,
        )


_NAMES: dict[Task, str] = {
    outbox_prune_loop: "outbox pruning",
    config_watch_loop: "configuration watch",
    refresher_loop: "token refresh",
    relay_loop: "event relay",
}


@frozen
class WorkerPass:
    """What ``worker --once`` did."""

    refresh: RefreshReport
    #: events published to the broker; None without a relay (events stay in the outbox)
    published: int | None = None


async def run_once(container: Container) -> WorkerPass:
    """Pass after pass until a pass finds nothing to do (bounded), then drain the outbox."""
    total = RefreshReport()
    for _ in range(100):
        report = await container.refresher.run_once(
            container.settings.refresh_batch_size, container.settings.refresh_concurrency
        )
        total = RefreshReport(
            **{f.name: getattr(total, f.name) + getattr(report, f.name) for f in fields(RefreshReport)}
        )
        if report.total == 0:
            break
    relay = container.relay
    return WorkerPass(total, published=await relay.drain() if relay is not None else None)


async def run_worker(container: Container, *, once: bool = False) -> None:
    if once:
        await run_once(container)
        return
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = worker_tasks(container.settings)
    announce("worker", tasks)
    try:
        metrics, stop_metrics = _serve_metrics(container)
    except Exception:
        await container.aclose()  # nothing runs on it yet
        raise
    # generations as serve has them: a change of the run-time overrides (the configuration watch,
    # with etcd) builds the next one and moves the loops onto it, with the new settings
    from entrypoints.http.app import AppHolder, BackgroundRunner

    runner = BackgroundRunner(tasks)
    holder = AppHolder(
        container, reload_container, runner, on_generation=metrics.instrument if metrics is not None else None
    )
    runner.start(container)
    try:
        await stop.wait()
    finally:
        await holder.aclose()  # the loops finish their pass; every generation is closed
        if stop_metrics is not None:
            stop_metrics()


def _serve_metrics(container: Container) -> tuple[Metrics | None, Callable[[], None] | None]:
    """The worker's metrics server when ``metrics_port`` is set (see docs/operations.md)."""
    from entrypoints.observability.metrics import serve_worker_metrics

    settings = container.settings
    if settings.metrics_port is None:
        return None, None
    try:
        metrics, stop = serve_worker_metrics(container, settings.host, settings.metrics_port)
    except OSError as exc:  # in use (another worker?), or an address this machine does not have
        fix = (
            "choose another port with --metrics-port N or CM_METRICS_PORT=N (one per worker)"
            if exc.errno == errno.EADDRINUSE
            else "check host (CM_HOST) and metrics_port (--metrics-port, CM_METRICS_PORT)"
        )
        where = f"{settings.host}:{settings.metrics_port}"
        raise CouldNotStart.from_os_error(f"cannot serve metrics on {where}", exc, fix) from None
    log.info("worker: metrics at http://%s:%d/metrics", settings.host, settings.metrics_port)
    return metrics, stop


async def reload_container(old: Container) -> Container:
    """Re-read the settings file, the environment and the run-time overrides in the key-value
    store, and build the next generation. Connections are shared unless a connection setting
    changed; the application retires the old generation once requests in flight are done."""
    settings = load_settings(old.settings.config_file, data_dir=old.settings.data_dir)
    infra = old.infrastructure
    shared = connection_key(settings) == infra.key or settings.storage == "memory"
    return await build_container(settings, infrastructure=infra if shared else None, iam=old.iam)
