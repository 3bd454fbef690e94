"""``connector-manager serve``: the HTTP API, and the background tasks that go with it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import signal
import socket
import tempfile
from pathlib import Path
from typing import Any

from connector_core.errors import ValidationError
from entrypoints.bootstrap import build_container
from entrypoints.cli.data_dir import require_usable
from entrypoints.cli.options import add_settings_options
from entrypoints.observability.banner import key_file_missing, log_banner
from entrypoints.service_secrets import warn_if_short_master_key
from entrypoints.settings import Settings, SettingsError


def register(commands: argparse._SubParsersAction[Any]) -> None:
    p = commands.add_parser(
        "serve",
        help="run the HTTP API (and the token refresher)",
        description="Run the HTTP API and its background tasks until stopped (Ctrl-C or SIGTERM). The first"
        " start on a data dir creates it: the keys and the embedded database.",
    )
    add_settings_options(p)
    p.add_argument("--host", help="address to listen on (default 127.0.0.1, or $CM_HOST)")
    p.add_argument("--port", type=int, help="port to listen on (default 8088, or $CM_PORT)")
    p.add_argument(
        "--ready-file",
        type=Path,
        metavar="PATH",
        help="write the API's URL to this file once it serves (for scripts that start serve in the background);"
        " its directory must exist",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.ready_file is not None:
        check_ready_file(args.ready_file)
    sock = listen(settings.host, settings.port)  # a busy port stops us before anything is opened
    try:
        require_usable(settings, create=True)  # the first start makes it
        asyncio.run(serve(settings, sock, ready_file=args.ready_file))
    finally:
        sock.close()
    return 0


def check_ready_file(path: Path) -> None:
    """Refuse a ``--ready-file`` that could not be written, before anything starts (or is
    created): the script waiting for it would wait in vain while the API serves."""
    folder = path.parent
    try:
        if not folder.is_dir():
            raise ValidationError.for_field(
                "--ready-file", f"{folder} does not exist or is not a directory: create it first, or write elsewhere"
            )
        if path.is_dir():
            raise ValidationError.for_field("--ready-file", f"{path} is a directory: give the path of a file")
        with tempfile.TemporaryFile(dir=folder):  # what writing the file needs: a new file in that directory
            pass
    except OSError as exc:
        raise ValidationError.for_field(
            "--ready-file", f"cannot write in {folder} ({exc.strerror}): choose a directory this user can write to"
        ) from None


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or one line saying why not and what to do."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise SettingsError.for_field("host", f"{host!r} is not an address this machine can listen on") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SettingsError.for_field(
                "port",
                f"{host}:{port} is in use (another `connector-manager serve`?): choose another port with"
                " --port N or CM_PORT=N (./scripts/serve passes its arguments on)",
            ) from None
        raise SettingsError.for_field("host", f"cannot listen on {host}:{port} ({exc.strerror})") from None
    return sock


async def serve(settings: Settings, sock: socket.socket | None = None, *, ready_file: Path | None = None) -> None:
    import uvicorn

    from entrypoints.http.app import create_app
    from entrypoints.workers import announce, reload_container, serve_tasks

    fresh_key = key_file_missing(settings, os.environ)
    container = await build_container(settings)
    log_banner("serve", settings, os.environ, key_generated=fresh_key, url=settings.base_url)
    warn_if_short_master_key(os.environ)
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
        log_config=None,  # uvicorn's records go through the process's one handler (observability.logging)
        access_log=False,  # one access line per request is written by ObserveRequests
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    # uvicorn handles SIGINT/SIGTERM itself, then re-raises the signal to the handler that was
    # there before; a no-op handler makes a requested shutdown exit 0 instead of dying by signal.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    # the lifespan closes every generation's connections on the way out
    serving = asyncio.create_task(server.serve(sockets=[sock] if sock is not None else None))
    if ready_file is not None:
        try:
            await _announce_ready(server, serving, ready_file, settings.base_url)
        except OSError as exc:  # checked before the start, but it may have gone since: a script would wait in vain
            server.should_exit = True
            await serving
            raise ValidationError.for_field(
                "--ready-file", f"cannot write {ready_file} ({exc.strerror}): the API was stopped"
            ) from None
    await serving
    if not server.started:  # start-up failed before the lifespan could close anything
        with contextlib.suppress(Exception):
            await container.aclose()


async def _announce_ready(server: Any, serving: asyncio.Task[None], path: Path, url: str) -> None:
    """Write ``url`` to ``path`` (whole or not at all) once uvicorn serves: started, lifespan done."""
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn sets a plain flag
        await asyncio.sleep(0.05)
    if server.started:
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            draft.write_text(url + "\n", encoding="utf-8")
            draft.replace(path)
        finally:
            draft.unlink(missing_ok=True)
