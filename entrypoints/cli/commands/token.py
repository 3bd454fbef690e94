"""``connector-manager token``: a bearer token signed with this deployment's secrets."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from entrypoints.bootstrap import build_container
from entrypoints.cli.options import add_settings_options
from entrypoints.settings import Settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    p = commands.add_parser("token", help="print a bearer token signed with this data dir's secrets")
    add_settings_options(p)
    p.add_argument("--org")
    p.add_argument("--user")
    p.add_argument("--email")
    p.add_argument("--admin", action="store_true")
    p.add_argument("--scoped", action="store_true", help="a service token (scoped secret)")
    p.add_argument("--scope", action="append", help="scope of a scoped token (repeatable)")
    p.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    print(asyncio.run(_token(settings, args)))
    return 0


async def _token(settings: Settings, args: argparse.Namespace) -> str:
    from entrypoints.http.auth import issue_scoped_token, issue_user_token

    container = await build_container(settings)
    try:
        secrets = container.service_secrets
        now = int(time.time())
        if args.scoped:
            return issue_scoped_token(
                secrets.scoped_jwt_secret,
                scopes=args.scope or ["fetch:config"],
                ttl=args.ttl,
                now=now,
                org_id=args.org,
            )
        missing = [f"--{n}" for n in ("org", "user", "email") if not getattr(args, n)]
        if missing:
            raise SystemExit(f"connector-manager token: missing {', '.join(missing)} (or use --scoped)")
        return issue_user_token(
            secrets.jwt_secret,
            user_id=args.user,
            org_id=args.org,
            email=args.email,
            admin=args.admin,
            ttl=args.ttl,
            now=now,
        )
    finally:
        await container.aclose()
