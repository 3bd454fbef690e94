"""``connector-manager``: serve the API, run the background worker, print tokens."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from connector_core.errors import ConnectorManagerError
from entrypoints.bootstrap import build_container
from entrypoints.settings import Settings, load_settings

log = logging.getLogger("connector_manager")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return load_settings(
        getattr(args, "config", None),
        data_dir=getattr(args, "data_dir", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        **extra,
    )


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


async def _serve(settings: Settings) -> None:
    import uvicorn

    from entrypoints.http.app import create_app
    from entrypoints.workers import announce, reload_container, serve_tasks

    container = await build_container(settings)
    tasks = serve_tasks(settings)
    announce("serve", tasks)
    app = create_app(
        container,
        reloader=reload_container,
        lifespan_tasks=tasks,
        close_on_shutdown=True,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    # uvicorn handles SIGINT/SIGTERM itself, then re-raises the signal to the handler that was
    # there before; a no-op handler makes a requested shutdown exit 0 instead of dying by signal.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    await server.serve()  # the lifespan closes every generation's connections on the way out
    if not server.started:  # start-up failed before the lifespan could close anything
        with contextlib.suppress(Exception):
            await container.aclose()


async def _worker(settings: Settings, once: bool) -> None:
    from entrypoints.workers import run_worker

    container = await build_container(settings)
    try:
        await run_worker(container, once=once)
    finally:
        await container.aclose()


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


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="settings file (TOML)")
    p.add_argument("--data-dir", type=Path, help="where the embedded database and keys live")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="connector-manager", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API (and the token refresher)")
    _common(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    worker = sub.add_parser("worker", help="run the token refresher and event relay only")
    _common(worker)
    worker.add_argument("--once", action="store_true", help="one pass, then exit")
    token = sub.add_parser("token", help="print a bearer token signed with this data dir's secrets")
    _common(token)
    token.add_argument("--org")
    token.add_argument("--user")
    token.add_argument("--email")
    token.add_argument("--admin", action="store_true")
    token.add_argument("--scoped", action="store_true", help="a service token (scoped secret)")
    token.add_argument("--scope", action="append", help="scope of a scoped token (repeatable)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = _settings(args)
        _configure_logging(settings.log_level)
        if args.command == "serve":
            asyncio.run(_serve(settings))
        elif args.command == "worker":
            asyncio.run(_worker(settings, args.once))
        else:
            print(asyncio.run(_token(settings, args)))
    except ConnectorManagerError as exc:
        print(f"connector-manager: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, never a traceback that could carry a setting's value
        print(
            f"connector-manager: could not start ({type(exc).__name__}); run with CM_LOG_LEVEL=debug", file=sys.stderr
        )
        log.debug("start-up failed", exc_info=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
