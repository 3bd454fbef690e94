"""One table from error class to HTTP status, and the error body every failure uses:
``{"error": {"code", "message", "metadata"?}}``."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from connector_core.errors import (
    BackendError,
    Conflict,
    ConnectorManagerError,
    CryptoError,
    DomainRuleViolation,
    LeaseLost,
    NotFound,
    OAuthError,
    PermissionDenied,
    ProviderError,
    ReauthorizationRequired,
    RetryableProviderError,
    Unauthenticated,
    Unavailable,
    ValidationError,
)
from entrypoints.http.auth import challenge

#: most specific first
STATUS_TABLE: list[tuple[type[ConnectorManagerError], int]] = [
    (ValidationError, 400),
    # well-formed, but refused in the resource's current state (not configured, disabled, ...)
    (DomainRuleViolation, 409),
    (OAuthError, 400),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (LeaseLost, 409),
    (ReauthorizationRequired, 409),
    (RetryableProviderError, 503),
    (ProviderError, 502),
    (Unavailable, 503),
    (CryptoError, 500),
]

HTTP_CODES = {
    400: "HTTP_BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "UNPROCESSABLE_CONTENT",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
}


#: an error body lists this many field errors at most, then says how many there were
MAX_LISTED_ERRORS = 20
#: a field path longer than this (a 500 kB field name) is cut, and so is a longer message
MAX_PATH_CHARS = 256
MAX_MESSAGE_CHARS = 512


def status_for(exc: ConnectorManagerError) -> int:
    if isinstance(exc, BackendError):
        return exc.status
    for cls, status in STATUS_TABLE:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(
    status: int,
    code: str,
    message: str,
    metadata: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    if len(message) > MAX_MESSAGE_CHARS:  # it may quote a field name of any length
        message = message[:MAX_MESSAGE_CHARS] + "…"
    body: dict[str, Any] = {"code": code, "message": message}
    if metadata:
        body["metadata"] = metadata
    return JSONResponse({"error": body}, status_code=status, headers=with_challenge(status, headers))


def with_challenge(status: int, headers: dict[str, str] | None = None) -> dict[str, str] | None:
    """Every 401 says how to authenticate (RFC 9110 section 11.6.1): ``WWW-Authenticate``."""
    if status != 401 or (headers and "WWW-Authenticate" in headers):
        return headers
    return {**(headers or {}), "WWW-Authenticate": challenge()}


def _short(item: Any) -> Any:
    path = item.get("path") if isinstance(item, dict) else None
    if isinstance(path, str) and len(path) > MAX_PATH_CHARS:
        return {**item, "path": path[:MAX_PATH_CHARS] + "…"}
    return item


def _capped(metadata: dict[str, Any]) -> dict[str, Any]:
    """A body with 100k unknown fields gets the first few errors and their count, not a
    multi-megabyte reply; an endless field name is cut."""
    errors = metadata.get("errors")
    if not isinstance(errors, list):
        return metadata
    capped = {**metadata, "errors": [_short(e) for e in errors[:MAX_LISTED_ERRORS]]}
    if len(errors) > MAX_LISTED_ERRORS:
        capped["errorCount"] = len(errors)
    return capped


def from_exception(exc: ConnectorManagerError) -> JSONResponse:
    status = status_for(exc)
    headers = None
    if isinstance(exc, RetryableProviderError) and exc.retry_after:
        headers = {"Retry-After": str(int(exc.retry_after + 0.999))}
    if status == 401:
        headers = {"WWW-Authenticate": challenge(exc if isinstance(exc, Unauthenticated) else None)}
    return error_response(status, exc.code, exc.message, _capped(exc.metadata) or None, headers)


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "examples": ["VALIDATION_ERROR"]},
                "message": {"type": "string"},
                "metadata": {
                    "type": "object",
                    "properties": {
                        "errors": {
                            "type": "array",
                            "maxItems": MAX_LISTED_ERRORS,
                            "items": {
                                "type": "object",
                                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                            },
                        },
                        "errorCount": {"type": "integer", "description": "how many errors there were in all"},
                    },
                },
            },
        }
    },
}
