"""How commands print: rich tables on a terminal, plain tab-separated lines when piped, JSON
with ``--json`` (one document, or one JSON object per line for streams)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of a table")


class Advance(Protocol):
    def __call__(self, amount: int = 1) -> None: ...


class Output:
    """Where a command's results go (stdout); progress goes to stderr, and only to a terminal."""

    def __init__(self, *, as_json: bool = False, stream: TextIO | None = None, err: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.err = err or sys.stderr
        self.as_json = as_json
        self.tty = self.stream.isatty() and not as_json
        self._console = Console(file=self.stream, highlight=False, soft_wrap=True) if self.tty else None

    @classmethod
    def of(cls, args: argparse.Namespace) -> Output:
        return cls(as_json=bool(getattr(args, "json", False)))

    def json(self, data: Any) -> None:
        self.stream.write(json.dumps(data, indent=None if not self.tty else 2, ensure_ascii=False) + "\n")
        self.stream.flush()

    def line(self, text: str) -> None:
        """A sentence for a person (printed as is in every mode but JSON, where it goes to stderr)."""
        (self.err if self.as_json else self.stream).write(text + "\n")

    def result(self, data: Any, sentence: str) -> None:
        """What a command did: ``data`` as JSON with ``--json``, else ``sentence``."""
        if self.as_json:
            self.json(data)
        else:
            self.line(sentence)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, data: Any, title: str = "") -> None:
        """``data`` as JSON with ``--json``; else the rows, as a table on a terminal."""
        if self.as_json:
            self.json(data)
            return
        if self._console is not None:
            table = Table(title=title or None, show_lines=False)
            for column in columns:
                table.add_column(column)
            for row in rows:
                table.add_row(*(_text(v) for v in row))
            self._console.print(table)
            return
        self.stream.write("\t".join(columns) + "\n")
        for row in rows:
            self.stream.write("\t".join(_text(v) for v in row) + "\n")

    def record(self, fields: Mapping[str, Any], *, data: Any) -> None:
        """One thing's fields, ``name: value`` per line (``data`` as JSON with ``--json``)."""
        if self.as_json:
            self.json(data)
            return
        width = max((len(k) for k in fields), default=0)
        for key, value in fields.items():
            self.stream.write(f"{key.ljust(width)}  {_text(value)}\n")

    @contextlib.contextmanager
    def progress(self, description: str, total: int) -> Iterator[Advance]:
        """A progress bar on a terminal's stderr; nothing elsewhere (the summary says it all)."""
        if not self.err.isatty():
            yield lambda amount=1: None
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(file=self.err), transient=False) as bar:
            task = bar.add_task(description, total=total)
            yield lambda amount=1: bar.advance(task, amount)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "-"
    return str(value)
