"""The log format: readable lines on a terminal, JSON lines elsewhere; the request id on every
record logged while serving a request; only safe client request ids are kept."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoints.observability.logging import configure_logging
from entrypoints.observability.request_context import RequestInfo, current_request, request_id_from


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def emit(stream: io.StringIO) -> list[str]:
    log = logging.getLogger("connector_manager.test")
    token = current_request.set(RequestInfo("req-42", org="org-1"))
    try:
        log.info("connector enabled: org=%s", "org-1", extra={"fields": {"status": 200, "route": "/a b"}})
    finally:
        current_request.reset(token)
    log.warning("outside a request")
    return stream.getvalue().splitlines()


@pytest.mark.usefixtures("restore_logging")
def test_a_terminal_gets_readable_lines_with_the_request_id() -> None:
    stream = Terminal()
    configure_logging("info", stream=stream)
    first, second = emit(stream)
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3} INFO    connector_manager\.test  connector enabled: org=org-1"
        r'  request_id=req-42 status=200 route="/a b"',
        first,
    ), first
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} WARNING connector_manager\.test  outside a request", second), second


@pytest.mark.usefixtures("restore_logging")
def test_a_value_with_a_newline_cannot_forge_a_terminal_line() -> None:
    """A claim (an org id, a user id) is the caller's text: its control characters are escaped,
    in the message and in the fields, so one record stays one line."""
    stream = Terminal()
    configure_logging("info", stream=stream)
    forged = "acme\n12:00:00.000 INFO    connector_manager  connector enabled: org=victim"
    logging.getLogger("connector_manager.test").info(
        "configuration saved: org=%s", forged, extra={"fields": {"org": forged}}
    )
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "acme\\n12:00:00.000" in lines[0] and 'org="acme\\n12:00' in lines[0]


@pytest.mark.usefixtures("restore_logging")
def test_a_pipe_gets_json_lines_and_uvicorn_shares_the_handler() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    first, second = (json.loads(line) for line in emit(stream))
    assert first["message"] == "connector enabled: org=org-1" and first["level"] == "info"
    assert (first["request_id"], first["status"], first["route"]) == ("req-42", 200, "/a b")
    assert "request_id" not in second
    logging.getLogger("uvicorn.error").info("Started server process [1]")
    logging.getLogger("uvicorn.access").info("127.0.0.1 - GET / 200")
    uvicorn = [json.loads(line) for line in stream.getvalue().splitlines()[2:]]
    assert [(r["logger"], r["message"]) for r in uvicorn] == [("uvicorn.error", "Started server process [1]")]


@pytest.mark.usefixtures("restore_logging")
def test_the_format_can_be_chosen() -> None:
    stream = Terminal()
    configure_logging("info", "json", stream=stream)
    assert json.loads(emit(stream)[0])["request_id"] == "req-42"


@pytest.mark.parametrize("given", [b"abc-123", b"0f" * 64, b"trace:1.2_3"])
def test_a_safe_client_request_id_is_kept(given: bytes) -> None:
    assert request_id_from(given) == given.decode()


@pytest.mark.parametrize(
    "given", [None, b"", b"a" * 129, b"has space", b'quote"', b"line\nbreak", "caf\u00e9".encode()]
)
def test_any_other_request_id_is_replaced_by_a_new_one(given: bytes | None) -> None:
    made = request_id_from(given)
    assert re.fullmatch(r"[0-9a-f]{32}", made) and made != request_id_from(given)


def test_the_banner_names_the_key_source_never_the_key(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:

    from entrypoints.observability.banner import log_banner
    from entrypoints.settings import load_settings

    settings = load_settings(env={}, data_dir=tmp_path, cache="memory")
    with caplog.at_level(logging.INFO, logger="connector_manager"):
        log_banner("worker", settings, {"CM_MASTER_KEY": "PLANTED-KEY-77"}, key_generated=False, metrics_port=9101)
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        f"worker starting: storage=sqlite secrets=sqlite events=outbox cache=memory locks=local;"
        f" data dir {tmp_path.resolve()}; keys from CM_MASTER_KEY"
    )
    assert record.fields["metrics_port"] == 9101 and record.fields["master_key_generated"] is False  # type: ignore[attr-defined]
    assert "PLANTED-KEY-77" not in caplog.text
