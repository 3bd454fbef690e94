"""``connector-manager wait``: until the API of a running ``serve`` answers healthy."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import httpx

from connector_core.errors import Unavailable
from entrypoints.cli.options import add_settings_options, seconds
from entrypoints.settings import Settings

POLL_SECONDS = 0.2


def register(commands: argparse._SubParsersAction[Any]) -> None:
    p = commands.add_parser(
        "wait",
        help="wait until the API answers healthy (for scripts that start serve in the background)",
        description="Poll GET /api/v1/health of a running `serve` until it answers 200, then print its URL."
        " Fails when the time is up, or when the server process (--pid) exits first.",
    )
    add_settings_options(p)
    p.add_argument("--url", help="the API's base URL (default: public_url, or http://host:port of the settings)")
    p.add_argument("--host", help="host of the API (default 127.0.0.1, or $CM_HOST)")
    p.add_argument("--port", type=int, help="port of the API (default 8088, or $CM_PORT)")
    p.add_argument(
        "--timeout", type=seconds, default=60.0, metavar="SECONDS", help="give up after this long (default 60)"
    )
    p.add_argument("--pid", type=int, help="the server's process id: stop waiting as soon as it has exited")
    p.set_defaults(run=run)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a child that exited but was not reaped yet is a zombie: gone for our purpose
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def run(args: argparse.Namespace, settings: Settings) -> int:
    base = (args.url or settings.base_url).rstrip("/")
    url = f"{base}/api/v1/health"
    deadline = time.monotonic() + args.timeout
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while True:
            if args.pid is not None and not _alive(args.pid):
                raise Unavailable(f"the server (pid {args.pid}) exited before {base} answered; see its output")
            try:
                answer = client.get(url)
            except httpx.HTTPError as exc:
                last = f"no answer ({type(exc).__name__})"
            else:
                if answer.status_code == 200:
                    print(f"ready: {base}")
                    return 0
                last = f"answered {answer.status_code}: {answer.text[:200]}"
            if time.monotonic() >= deadline:
                raise Unavailable(f"{base} is not ready after {args.timeout:g} s ({last})")
            time.sleep(POLL_SECONDS)
