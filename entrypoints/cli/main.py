"""The ``connector-manager`` command line: a small main that registers every command group.

A command group is a module in :mod:`entrypoints.cli.commands` that defines
``register(commands)``; it adds its sub-command(s) with ``commands.add_parser(...)`` and sets
``run=<function(args, settings) -> int>`` as the parser's default. Adding a command is adding a
module: nothing here changes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType

from connector_core.errors import ConnectorManagerError
from entrypoints.cli import commands
from entrypoints.cli.options import settings_from
from entrypoints.observability.logging import configure_logging, failure_outline
from entrypoints.settings import Settings
from entrypoints.start_failure import CouldNotStart

log = logging.getLogger("connector_manager")

DESCRIPTION = "Serve the connector manager's API, run its background worker, and manage it."

#: what a command group's ``run`` default is
Run = Callable[[argparse.Namespace, Settings], int | None]


def command_modules() -> Iterator[ModuleType]:
    """Every command group, in name order."""
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            yield module


def version() -> str:
    try:
        return importlib.metadata.version("connector-manager")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="connector-manager", description=DESCRIPTION)
    root.add_argument("--version", action="version", version=f"%(prog)s {version()}", help="print the version")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in command_modules():
        module.register(sub)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run: Run = args.run
    try:
        settings = settings_from(args)
        configure_logging(settings.log_level, settings.log_format)
        return run(args, settings) or 0
    except ConnectorManagerError as exc:
        print(f"connector-manager: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except CouldNotStart as exc:  # a path or a port, and the OS's reason
        print(f"connector-manager: could not start: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # one line, never a traceback that could carry a setting's value
        print(f"connector-manager: could not start ({_outline(exc)}); run with CM_LOG_LEVEL=debug", file=sys.stderr)
        log.debug("start-up failed:\n%s", failure_outline(exc))
        return 1


def _outline(exc: Exception) -> str:
    """The exception's class; for a file the operating system refused, also its reason and the
    path (neither is a setting's value, unlike a driver's message, which is withheld)."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{type(exc).__name__}: {exc.strerror}: {exc.filename!s}"
    return type(exc).__name__
