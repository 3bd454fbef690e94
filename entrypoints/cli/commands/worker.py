"""``connector-manager worker``: the token refresher and the event relay, without the API."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from entrypoints.bootstrap import build_container
from entrypoints.cli.options import add_settings_options
from entrypoints.settings import Settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    p = commands.add_parser("worker", help="run the token refresher and event relay only")
    add_settings_options(p)
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(_worker(settings, args.once))
    return 0


async def _worker(settings: Settings, once: bool) -> None:
    from entrypoints.workers import run_worker

    container = await build_container(settings)
    try:
        await run_worker(container, once=once)
    finally:
        await container.aclose()
