"""``connector-manager admin-url``: a one-time sign-in link to the web console."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from entrypoints.bootstrap import build_container
from entrypoints.cli.data_dir import require_initialised
from entrypoints.cli.options import add_settings_options, nonblank
from entrypoints.console.links import DEFAULT_LINK_SECONDS, MAX_LINK_SECONDS, issue_link, link_path
from entrypoints.settings import Settings, SettingsError


def register(commands: argparse._SubParsersAction[Any]) -> None:
    p = commands.add_parser(
        "admin-url",
        help="print a one-time sign-in link to the web console (/admin) as an admin of an org",
        description="Print a link that signs you in to the web console as an admin of ORG. It works once, "
        f"within --ttl seconds (default {DEFAULT_LINK_SECONDS}), in any process of this deployment.",
    )
    add_settings_options(p)
    p.add_argument("--org", required=True, type=nonblank, help="the org to administer")
    p.add_argument("--user", default="admin", type=nonblank, help="the user id the console acts as (default: admin)")
    p.add_argument("--email", type=nonblank, help="the email shown in the console")
    p.add_argument(
        "--ttl",
        type=int,
        default=DEFAULT_LINK_SECONDS,
        metavar="SECONDS",
        help=f"how long the link can be used, 1 to {MAX_LINK_SECONDS} (default {DEFAULT_LINK_SECONDS})",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    # checked before anything is opened or created
    if not 0 < args.ttl <= MAX_LINK_SECONDS:
        raise SettingsError.for_field("--ttl", f"must be 1 to {MAX_LINK_SECONDS} seconds")
    if settings.secrets == "memory":
        raise SettingsError.for_field(
            "secrets", "is memory: a link kept in this command's memory could not be used by the server"
        )
    require_initialised(settings)
    print(asyncio.run(_link(settings, args)))
    return 0


async def _link(settings: Settings, args: argparse.Namespace) -> str:
    container = await build_container(settings)
    try:
        token = await issue_link(
            container.secrets_store,
            org_id=args.org,
            user_id=args.user,
            email=args.email,
            now=int(time.time()),
            ttl=args.ttl,
        )
    finally:
        await container.aclose()
    return settings.base_url.rstrip("/") + link_path(token)
