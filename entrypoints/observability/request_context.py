"""What every log line of one HTTP request carries: its request id, and the org of its verified
token once known. Held in a context variable set by :mod:`.requests` for the request's task."""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

from attrs import define

__all__ = ["RequestInfo", "current_request", "new_request_id", "note_org", "request_id_from"]

#: what an X-Request-ID from a client may be; anything else is replaced by a generated id
_SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@define
class RequestInfo:
    request_id: str
    #: the org of the request's verified token (None: not signed in, or not yet verified)
    org: str | None = None


current_request: ContextVar[RequestInfo | None] = ContextVar("current_request", default=None)


def new_request_id() -> str:
    return secrets.token_hex(16)


def request_id_from(header: bytes | None) -> str:
    """The client's id when it is 1-128 characters of letters, digits and ``._:-``, else a new one
    (an id is echoed in a response header and written to every log line: no room for tricks)."""
    if header is not None:
        try:
            given = header.decode("ascii")
        except UnicodeDecodeError:
            return new_request_id()
        if _SAFE_ID.fullmatch(given):
            return given
    return new_request_id()


def note_org(org_id: str | None) -> None:
    """Record the verified org of the current request (for its access line)."""
    info = current_request.get()
    if info is not None and org_id is not None:
        info.org = org_id
