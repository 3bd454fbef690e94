"""``connector-manager worker``: the token refresher and the event relay, without the API."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import TYPE_CHECKING, Any

import attrs

from entrypoints.bootstrap import build_container
from entrypoints.cli.data_dir import require_initialised, require_usable
from entrypoints.cli.options import add_settings_options
from entrypoints.cli.output import Output, add_output_options
from entrypoints.observability.banner import key_file_missing, log_banner
from entrypoints.service_secrets import warn_if_short_master_key
from entrypoints.settings import Settings

if TYPE_CHECKING:
    from entrypoints.workers import WorkerPass


def register(commands: argparse._SubParsersAction[Any]) -> None:
    p = commands.add_parser(
        "worker",
        help="run the token refresher and event relay only",
        description="Refresh due tokens, announce expiries and relay events (with Kafka) until stopped;"
        " with --once, do what is due now, print what was done, and exit. It works on an existing"
        " deployment: the data dir must exist already (the first `serve` creates it).",
    )
    add_settings_options(p)
    p.add_argument("--once", action="store_true", help="do what is due now, print what was done, then exit")
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://host:PORT/metrics while running (or $CM_METRICS_PORT)",
    )
    add_output_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    out = Output.of(args)
    # never a new deployment: a worker on a mistyped data dir would work on nothing, with keys of its own
    require_initialised(settings)
    require_usable(settings)
    done = asyncio.run(_worker(settings, args.once))
    if done is None:
        return 0
    if out.as_json:
        out.json(attrs.asdict(done))
        return 0
    events = "events stay in the outbox (no relay)" if done.published is None else f"{done.published} events published"
    r = done.refresh
    out.line(
        f"worker --once: {r.refreshed} tokens refreshed, {r.failed} failed,"
        f" {r.reauth_required} need re-authorization, {r.skipped} skipped; {events}"
    )
    return 0


async def _worker(settings: Settings, once: bool) -> WorkerPass | None:
    from entrypoints.workers import run_once, run_worker

    fresh_key = key_file_missing(settings, os.environ)
    container = await build_container(settings)
    if not once:
        log_banner("worker", settings, os.environ, key_generated=fresh_key, metrics_port=settings.metrics_port)
        warn_if_short_master_key(os.environ)
        await run_worker(container)  # closes every generation it ran (a reload builds new ones)
        return None
    try:
        return await run_once(container)
    finally:
        await container.aclose()
