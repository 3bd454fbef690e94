"""``connector-manager token``: a bearer token signed with this deployment's secrets."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from connector_core.errors import ValidationError
from entrypoints.bootstrap import build_container
from entrypoints.cli.data_dir import require_initialised
from entrypoints.cli.options import add_settings_options, nonblank
from entrypoints.settings import Settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    p = commands.add_parser(
        "token",
        help="print a bearer token signed with this deployment's secrets",
        description="Print a bearer token for the API: a user token (--org, --user, --email; --admin for an"
        " org admin) or a scoped service token (--scoped) for the internal routes. The data dir must"
        " exist already (the first `serve` creates it) unless --init is given.",
    )
    add_settings_options(p)
    p.add_argument(
        "--org", type=nonblank, help="the org the token is for (required for a user token; binds a scoped one)"
    )
    p.add_argument("--user", type=nonblank, help="the user id of a user token")
    p.add_argument("--email", type=nonblank, help="the e-mail address of a user token")
    p.add_argument("--admin", action="store_true", help="a user token of an org admin (admin routes)")
    p.add_argument("--scoped", action="store_true", help="a service token (scoped secret) for the internal routes")
    p.add_argument(
        "--scope",
        action="append",
        type=nonblank,
        metavar="SCOPE",
        help="scope of a scoped token (repeatable; default fetch:config)",
    )
    p.add_argument("--ttl", type=int, default=3600, metavar="SECONDS", help="lifetime in seconds (default 3600)")
    p.add_argument(
        "--init",
        action="store_true",
        help="create the data dir (keys, database) when it does not exist yet, instead of refusing",
    )
    p.set_defaults(run=run)


def _check_arguments(args: argparse.Namespace) -> None:
    """Every argument checked before anything is read or written."""
    if args.ttl <= 0:
        raise ValidationError.for_field("--ttl", "must be a positive number of seconds")
    if args.scoped:
        wrong = [f"--{n}" for n in ("user", "email", "admin") if getattr(args, n)]
        if wrong:
            raise ValidationError.for_field(wrong[0], "is for a user token, not a scoped one (--scoped)")
        return
    if args.scope:
        raise ValidationError.for_field("--scope", "is for a scoped token: add --scoped")
    missing = [f"--{n}" for n in ("org", "user", "email") if not getattr(args, n)]
    if missing:
        raise ValidationError(
            f"a user token needs {', '.join(missing)} (or use --scoped for a service token)",
            errors=[{"path": m, "message": "is required"} for m in missing],
        )


def run(args: argparse.Namespace, settings: Settings) -> int:
    _check_arguments(args)
    if not args.init:
        require_initialised(settings, init=True)
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
