"""The ``connector-manager`` command: one module per command group in
:mod:`entrypoints.cli.commands`, registered by :func:`entrypoints.cli.main.parser`."""

from __future__ import annotations

from entrypoints.cli.main import main, parser

__all__ = ["main", "parser"]
