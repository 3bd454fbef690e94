"""One log format for the whole process: JSON lines when stderr is not a terminal (collectors,
files, containers), readable lines on a terminal. Uvicorn's own loggers go through the same
handler; its access log is off (the service writes one access line per request itself).

Every record carries the current request's id (:mod:`.request_context`) when it was logged
while serving a request; ``extra={"fields": {...}}`` adds named fields (the access line, the
start-up banner). Messages never interpolate a secret: the code that logs passes ids and
names only, and a test plants credentials and searches the output.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any, Literal

from entrypoints.observability.request_context import current_request

__all__ = ["ConsoleFormatter", "JsonFormatter", "configure_logging", "fields_of"]

LogFormat = Literal["auto", "json", "console"]

#: loggers of libraries that would otherwise keep their own handlers and formats
_UVICORN = ("uvicorn", "uvicorn.error")


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The record's named fields and, while serving a request, its request id."""
    found: dict[str, Any] = {}
    info = current_request.get()
    if info is not None:
        found["request_id"] = info.request_id
    extra = getattr(record, "fields", None)
    if isinstance(extra, Mapping):
        found.update(extra)
    return found


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", **fields}``, one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``12:00:01.234 INFO  logger  message  key=value ...`` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        line = f"{moment} {record.levelname:<7} {record.name}  {_one_line(record.getMessage())}"
        extra = fields_of(record)
        if extra:
            line += "  " + " ".join(f"{k}={_plain(v)}" for k, v in extra.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _plain(value: Any) -> str:
    text = "-" if value is None else str(value)
    if not text or " " in text or not text.isprintable():
        return json.dumps(text)  # quoted, control characters escaped: one line, one field
    return text


def _one_line(text: str) -> str:
    """``text`` with control characters escaped: a value from a request (a claim, an id) cannot
    start a line of its own that looks like another record."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


def configure_logging(level: str, fmt: LogFormat = "auto", stream: IO[str] | None = None) -> None:
    """One handler on the root logger, writing to ``stream`` (stderr) in ``fmt`` (``auto``:
    JSON unless the stream is a terminal); uvicorn's loggers hand their records to it."""
    stream = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if _is_tty(stream) else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ConsoleFormatter() if fmt == "console" else JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for name in _UVICORN:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)  # the root's level (uvicorn.Config may set its own)
    logging.getLogger("uvicorn.access").disabled = True  # ours: one access line per request
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is not news


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def failure_outline(exc: BaseException) -> str:
    """Where ``exc`` (and each exception it was raised from) happened: the frames and the
    exception types, never their messages. A driver's message can repeat a connection string
    with its password; the frames are the code, never a setting's value."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__))
        parts.append(f"{frames}{type(current).__module__}.{type(current).__qualname__} (message withheld)")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n-- raised while handling --\n".join(reversed(parts))
