"""One deadline per request, shared by every dependency call made while serving it.

Without it, the waits of one request stack up: a storage call's socket timeout, then the
driver's retry, then a cache call's timeout, each "short" on its own, make a hung dependency
cost many seconds. With it, the HTTP layer opens :func:`deadline` once per request and every
adapter bounds its own wait with :func:`remaining`: a call waits at most its usual timeout, cut
to what is left of the request's time, so a request answers (503 when a dependency hangs)
shortly after its deadline, however many calls it makes.

Work outside a request (the refresher, the relay) has no deadline: adapters use their own
timeouts. The deadline lives in a context variable, so it follows the request into the tasks it
starts and never leaks into another request.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["MIN_WAIT_SECONDS", "REQUEST_BUDGET_SECONDS", "deadline", "remaining"]

#: how long a request may wait on its dependencies in all (a 503 comes shortly after)
REQUEST_BUDGET_SECONDS = 1.5
#: a call past the deadline still gets this long: enough for a healthy server to answer, so
#: time spent elsewhere (a slow OAuth provider) does not fail the storage write that follows
MIN_WAIT_SECONDS = 0.25

_deadline: ContextVar[float | None] = ContextVar("connector_manager_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every dependency call in the block (and in tasks it starts) shares one deadline,
    ``seconds`` from now. An enclosing deadline that ends sooner stays in force."""
    end = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(end if outer is None else min(outer, end))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining(timeout: float) -> float:
    """How long a dependency call may wait now: its own ``timeout``, cut to what is left of the
    current deadline (never below :data:`MIN_WAIT_SECONDS`, nor above ``timeout``)."""
    end = _deadline.get()
    if end is None:
        return timeout
    return min(timeout, max(end - time.monotonic(), MIN_WAIT_SECONDS))
