"""``connector-manager events tail``: the outbox's events, and with ``--follow`` new ones as
they are stored (read in the store, the same order and cursor as ``GET /internal/events``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from adapters.event_wire import envelope
from connector_core.ports.outbox import OutboxMessage, OutboxReader
from entrypoints.cli.options import add_settings_options, nonblank, seconds
from entrypoints.cli.runtime import opened
from entrypoints.settings import Settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    group = commands.add_parser(
        "events",
        help="read the events the service stored (appEnabled, TOKEN_REFRESHED, ...)",
        description="Read the outbox's events directly in the deployment's store.",
    )
    sub = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser(
        "tail",
        help="the newest events, or those after an event id; --follow prints new ones as they come",
        description="Print the newest events (or, with --after, those stored after that event), oldest first;"
        " with --follow keep printing new ones until interrupted. One line per event, or one JSON object per"
        " line with --json.",
    )
    add_settings_options(p)
    p.add_argument("--org", type=nonblank, help="only this org's events (default: every org's)")
    p.add_argument(
        "--after", type=nonblank, metavar="EVENT_ID", help="start after this event id (the last one you saw)"
    )
    p.add_argument("--limit", type=int, default=20, metavar="N", help="events per read, at most 1000 (default 20)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events until interrupted")
    p.add_argument(
        "--interval", type=seconds, default=1.0, metavar="SECONDS", help="how often --follow looks (default 1)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per event and line (for scripts)")
    p.set_defaults(run=run)


def _line(message: OutboxMessage) -> str:
    event = message.event
    when = event.occurred_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"{when}  {event.event_type:<26} {event.org_id}/{event.connector_key}  {event.event_id}"


#: event ids remembered to print each event once (more than can be read again at a time)
_REMEMBERED = 10_000


def _print(messages: Sequence[OutboxMessage], as_json: bool) -> None:
    for message in messages:
        sys.stdout.write((json.dumps(envelope(message), ensure_ascii=False) if as_json else _line(message)) + "\n")
    sys.stdout.flush()  # a reader at the other end of a pipe sees each event as it comes


async def _read(outbox: OutboxReader, after: str | None, limit: int, org: str | None) -> Sequence[OutboxMessage]:
    if after:
        return await outbox.after(after, limit, org_id=org)
    return await outbox.recent(limit, org_id=org)


async def tail(settings: Settings, args: argparse.Namespace) -> None:
    limit = max(1, min(args.limit, 1000))
    async with opened(settings) as container:
        outbox = container.storage.outbox
        cursor: str | None = args.after
        printed: dict[str, None] = {}  # the newest events can be read again (resume_point): once each
        while True:
            messages = await _read(outbox, cursor, limit, args.org)
            new = [m for m in messages if m.event.event_id not in printed]
            _print(new, args.json)
            printed.update((m.event.event_id, None) for m in new)
            for old in list(printed)[: max(0, len(printed) - _REMEMBERED)]:
                del printed[old]
            cursor = await outbox.resume_point(messages, after=cursor, org_id=args.org)
            if not args.follow:
                return
            if len(messages) < limit or not new:  # caught up: look again later
                await asyncio.sleep(args.interval)


def run(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(tail(settings, args))
    return 0
