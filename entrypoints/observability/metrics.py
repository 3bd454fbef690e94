"""The Prometheus metrics of one process: the registry, the request and refresh counters, and
the store gauges (:mod:`.store_gauges`).

``serve`` exposes them at ``GET /metrics`` on its own port; each ``worker`` on the port of its
``metrics_port`` setting (one port per worker: every process counts its own requests and
refreshes, and Prometheus adds them up by ``instance``). No label carries an org, a user, a
token or any other value from a request: routes are templates, methods a fixed set, refresh
outcomes by connector key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from connector_core.services.refresh import RefreshOutcome
from entrypoints.observability.store_gauges import PREFIX, StoreGauges

if TYPE_CHECKING:
    from entrypoints.bootstrap import Container

__all__ = ["CONTENT_TYPE", "KNOWN_METHODS", "Metrics", "serve_worker_metrics"]

#: the classic text format (0.0.4), which every Prometheus version reads
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: a method outside this set is counted as "other" (a client may send any token as a method)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: request latency buckets (seconds): the API answers in milliseconds, a refresh takes longer
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metrics of one process. Create one per process (tests: one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["route", "method", "status"]
        self.requests = Counter(f"{PREFIX}_http_requests", "HTTP requests answered", labels, registry=self.registry)
        self.latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time from a request's arrival to its response's end",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.refreshes = Counter(
            f"{PREFIX}_token_refreshes",
            "Token refreshes by connector (provider) and outcome",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.gauges: StoreGauges | None = None
        #: (route, method, status) -> its counter and histogram children (bounded: routes are
        #: templates, methods a fixed set); looked up once per request instead of ``labels()``
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method if method in KNOWN_METHODS else "other", status)
        children = self._children.get(key)
        if children is None:
            labels = (key[0], key[1], str(status))
            children = self._children[key] = (self.requests.labels(*labels), self.latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    def refresh_outcome(self, connector_key: str, outcome: RefreshOutcome) -> None:
        self.refreshes.labels(connector_key, outcome.value).inc()

    def instrument(self, container: Container) -> None:
        """Count the refreshes of ``container`` (each generation is instrumented when it goes live)."""
        container.refresher.on_outcome = self.refresh_outcome

    def read_stores(self, container: Callable[[], Container], **options: Any) -> StoreGauges:
        """Add the store gauges, read from the generation ``container()`` returns."""
        self.gauges = StoreGauges(container, **options)
        self.registry.register(self.gauges)
        return self.gauges

    async def render(self) -> bytes:
        """The exposition text, with the store gauges read first when stale."""
        if self.gauges is not None:
            await self.gauges.update()
        return generate_latest(self.registry)


class _OnLoop(Collector):
    """The store gauges for a scrape served on another thread (the worker's metrics server):
    the reading runs on the worker's event loop, bounded by ``timeout``."""

    def __init__(self, gauges: StoreGauges, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._gauges, self._loop, self._timeout = gauges, loop, timeout

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        future = asyncio.run_coroutine_threadsafe(self._gauges.update(), self._loop)
        try:
            future.result(timeout=self._timeout)
        except Exception:  # the last reading is served; the read-error gauge tells why
            future.cancel()
        yield from self._gauges.collect()


def serve_worker_metrics(container: Container, host: str, port: int) -> tuple[Metrics, Callable[[], None]]:
    """The worker's metrics, served at ``http://host:port/metrics`` from a thread (the scrape
    reads the stores on the running loop). Returns them and the function that stops the server."""
    from prometheus_client import start_http_server

    metrics = Metrics()
    metrics.instrument(container)
    gauges = StoreGauges(lambda: container)
    metrics.registry.register(_OnLoop(gauges, asyncio.get_running_loop(), timeout=10.0))
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return metrics, stop
