"""The backend connector service port over HTTP with httpx.

The HTTP layer proxies some routes to the backend connector service. This client forwards
method, path, query and body, and of the caller's headers only ``Authorization`` and
``Content-Type`` (never cookies, forwarding headers or anything else a browser sent).

Retries (3 attempts, exponential backoff with jitter):

- failures before the request reached the backend (connection refused, connect or pool
  timeout) are retried for every method: nothing happened there yet;
- failures after it may have reached it (read timeout, connection closed mid-answer) and
  5xx answers are retried only for idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS):
  repeating a POST could act twice. A POST that fails that way is :class:`Unavailable` at once.

A backend that stays unreachable, or answers what httpx cannot read (an undecodable body, a
redirect loop), is :class:`Unavailable` with the message users know from the existing service:
every httpx error is translated in one place, :meth:`HttpxBackendClient.forward`. A backend
that answers is returned as it answered (the HTTP layer maps the status with
:func:`map_backend_status`). Retries are tenacity's: one attempt budget shared by exceptions
and 5xx answers, the predicates chosen by the method.

No message and no log line carries a header value, a body or a query string.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import unquote, urlsplit

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, retry_if_result, stop_after_attempt

from adapters.http.httpx_errors import HTTPX_ERRORS
from adapters.redaction import redact_url
from connector_core.errors import Unavailable, ValidationError
from connector_core.ports.backend_client import BackendResponse

__all__ = [
    "FORWARDED_HEADERS",
    "IDEMPOTENT_METHODS",
    "UNAVAILABLE_MESSAGE",
    "HttpxBackendClient",
    "map_backend_status",
]

log = logging.getLogger(__name__)

UNAVAILABLE_MESSAGE = (
    "Connector Service is currently unavailable. Please check your network connection or try again later."
)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: The only caller headers that reach the backend (matched case-insensitively).
FORWARDED_HEADERS = ("Authorization", "Content-Type")
_PASS_THROUGH = frozenset({400, 401, 403, 404, 409})
_MAX_BACKOFF = 8.0
_SYSTEM_RANDOM = secrets.SystemRandom()

#: The request never left: safe to repeat whatever the method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def map_backend_status(status: int) -> int:
    """The status our API answers for a backend status: 400/401/403/404/409 pass through,
    422 becomes 400, any other error 500; success and redirect statuses are kept."""
    if status < 400 or status in _PASS_THROUGH:
        return status
    if status == 422:
        return 400
    return 500


class HttpxBackendClient:
    """Forwards requests to the backend connector service at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff_base: float = 0.5,
        check_timeout: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _SYSTEM_RANDOM.random,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an absolute http(s) URL")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.check_timeout = check_timeout
        self._sleep = sleep
        self._random = random
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        return f"HttpxBackendClient(base_url={redact_url(self.base_url)!r})"

    async def forward(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        query: Mapping[str, str] | None = None,
    ) -> BackendResponse:
        """Forward one request; see the module docstring for retries and errors."""
        method = method.upper()
        url = self._url(path)
        wanted = {h.lower(): h for h in FORWARDED_HEADERS}
        forwarded = {wanted[k.lower()]: v for k, v in headers.items() if k.lower() in wanted}
        idempotent = method in IDEMPOTENT_METHODS

        def retry_error(exc: BaseException) -> bool:
            return isinstance(exc, httpx.TransportError) and (idempotent or isinstance(exc, _NOT_SENT))

        def retry_answer(response: httpx.Response) -> bool:
            return idempotent and response.status_code >= 500

        def log_retry(state: RetryCallState) -> None:
            outcome = state.outcome
            assert outcome is not None and state.next_action is not None
            exc = outcome.exception()
            reason = type(exc).__name__ if exc is not None else f"HTTP {outcome.result().status_code}"
            log.info("backend %s %s failed (%s); retrying in %.2fs", method, path, reason, state.next_action.sleep)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=lambda state: self._delay(state.attempt_number),
            sleep=self._sleep,
            retry=retry_if_exception(retry_error) | retry_if_result(retry_answer),
            before_sleep=log_retry,
            # out of attempts: the last answer as it was (a 5xx), or the last error raised
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        try:
            response: httpx.Response = await retrying(
                self._client.request,
                method,
                url,
                headers=forwarded,
                content=body,
                params=dict(query) if query else None,
                timeout=self.timeout,
            )
        except HTTPX_ERRORS as exc:
            log.warning(
                "backend connector service unreachable: %s %s (%s, attempt %d)",
                method,
                path,
                type(exc).__name__,
                retrying.statistics.get("attempt_number", 1),
            )
            raise Unavailable(UNAVAILABLE_MESSAGE, metadata={"reason": type(exc).__name__}) from exc
        return BackendResponse(response.status_code, response.content, response.headers.get("content-type"))

    async def check(self) -> bool:
        """GET ``/health`` (or ``/`` when the backend has no such route) within
        ``check_timeout``: True when the backend answers without a server error."""
        for path in ("/health", "/"):
            try:
                response = await self._client.get(self.base_url + path, timeout=self.check_timeout)
            except HTTPX_ERRORS:
                return False
            if response.status_code != 404:
                return response.status_code < 500
        return True  # it answered, if only with 404s

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def _delay(self, attempt: int) -> float:
        """Exponential with "equal jitter": uniform in [d/2, d] for d = base·2^(attempt-1) (capped),
        so retries always back off yet callers that failed together do not retry together."""
        ceiling = min(_MAX_BACKOFF, self.backoff_base * 2.0 ** (attempt - 1))
        return ceiling / 2 + ceiling / 2 * self._random()

    def _url(self, path: str) -> str:
        """``base_url`` + ``path``; a path that could point elsewhere (scheme, ``//host``,
        ``..``, backslashes, control characters) is refused rather than followed."""
        if (
            not path.startswith("/")
            or path.startswith("//")
            or "\\" in path
            or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in path)
            or ".." in unquote(path).split("/")
            or "?" in path
            or "#" in path
        ):
            raise ValidationError.for_field("path", "must be an absolute path on the backend service")
        return self.base_url + path
