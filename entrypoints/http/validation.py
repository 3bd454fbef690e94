"""Request validation: the body read within its size limit, strict JSON, JSON Schema checks
whose errors name each field at fault and never echo a value back."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema import ValidationError as SchemaError
from starlette.requests import Request

from connector_core.errors import ConnectorManagerError, ValidationError

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
#: what one section of a configuration (``auth``, ``sync``, ``filters``) or a filter selection may
#: hold, as JSON: stored data and the events about it stay well inside what a broker takes (1 MB)
MAX_SECTION_BYTES = 64 * 1024


class PayloadTooLarge(ConnectorManagerError):
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ConnectorManagerError):
    code = "UNSUPPORTED_MEDIA_TYPE"


class RequestTimeout(ConnectorManagerError):
    code = "REQUEST_TIMEOUT"


FORMATS = FormatChecker()


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)"
#: printable ASCII without the backslash (browsers read it as a slash)
_URL_CHAR = r"[!-\[\]-~]"
#: ``format: uri`` here, written out so that the OpenAPI document can say it exactly: an
#: absolute http(s) URL with a host name (ASCII; an internationalised name in its xn-- form)
#: and a valid port, in printable ASCII without backslashes: no whitespace, no control
#: characters (NUL, ESC, DEL, C1), which browsers and HTTP libraries read in different ways
WEB_URL_PATTERN = rf"^https?://{_LABEL}(?:\.{_LABEL})*(?::{_PORT})?(?:[/?#]{_URL_CHAR}*)?$"
_WEB_URL = re.compile(WEB_URL_PATTERN)


@FORMATS.checks("uri", raises=ValueError)
def _is_web_uri(value: object) -> bool:
    """jsonschema only checks ``format: uri`` when an optional package is installed; this check
    is always on and is :data:`WEB_URL_PATTERN`."""
    return not isinstance(value, str) or _WEB_URL.fullmatch(value) is not None


def make_validator(schema: Mapping[str, Any] | None) -> Draft202012Validator | None:
    if schema is None:
        return None
    return Draft202012Validator(dict(schema), format_checker=FORMATS)


def schema_errors(validator: Draft202012Validator, data: Any, root: str) -> list[dict[str, str]]:
    """Every violation, each with the dotted path of the field at fault."""
    found: list[dict[str, str]] = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        found.extend(_describe(err, root))
    return found


def _describe(err: SchemaError, root: str) -> list[dict[str, str]]:
    parts = [str(p) for p in err.absolute_path]
    base = ".".join([root, *parts]) if root else ".".join(parts)

    def at(name: str) -> str:
        return f"{base}.{name}" if base else name

    wanted: Any = err.validator_value
    schema: Any = err.schema
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [p for p in wanted if p not in err.instance]
        return [{"path": at(m), "message": "is required"} for m in missing]
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        return [{"path": at(k), "message": "is not an allowed field"} for k in extra]
    message = _safe_message(err)
    return [{"path": base or root or "body", "message": message}]


def _safe_message(err: SchemaError) -> str:
    """The violation in words, never echoing the value back (it may be a secret)."""
    value: Any = err.validator_value
    if err.validator == "minLength":
        return f"must be at least {value} characters"
    if err.validator == "maxLength":
        return f"must be at most {value} characters"
    if err.validator == "pattern":
        return "has an invalid format"
    if err.validator == "format":
        return f"must be a valid {value}"
    if err.validator == "enum":
        return f"must be one of {', '.join(map(str, value))}"
    if err.validator == "type":
        return f"must be of type {value if isinstance(value, str) else ' or '.join(value)}"
    if err.validator in {"minimum", "maximum"}:
        return f"must be {'at least' if err.validator == 'minimum' else 'at most'} {value}"
    return f"violates {err.validator}"


def check(validator: Draft202012Validator, data: Any, what: str) -> None:
    """Raise one :class:`ValidationError` listing every violation of ``data``."""
    errors = schema_errors(validator, data, "")
    if errors:
        raise ValidationError(f"invalid {what}: {errors[0]['path']} {errors[0]['message']}", errors=errors)


def check_section_sizes(sections: Mapping[str, Any], limit: int = MAX_SECTION_BYTES) -> None:
    """:class:`PayloadTooLarge` (413) naming each section (path → value) whose JSON is larger
    than ``limit`` bytes."""
    message = f"is larger than {limit // 1024} KiB as JSON"
    too_large = [path for path, value in sections.items() if value is not None and _json_bytes(value) > limit]
    if too_large:
        raise PayloadTooLarge(
            f"{too_large[0]} {message}", metadata={"errors": [{"path": p, "message": message} for p in too_large]}
        )


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


async def read_body(request: Request, within_seconds: float, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, at most ``max_bytes`` (1 MiB), within ``within_seconds`` (a client that
    trickles its body would otherwise hold a connection and a task for as long as it likes). A
    ``Content-Length`` above the limit is refused before anything is read."""
    too_large = f"request body is larger than {_size(max_bytes)}"
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise PayloadTooLarge(too_large)
        except ValueError:
            raise ValidationError.for_field("Content-Length", "is not a number") from None
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(too_large)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {within_seconds:g} seconds; send it again, without pauses"
        ) from None
    return b"".join(chunks)


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n // 1024} KiB"


async def parse_body(request: Request, validator: Draft202012Validator | None, within_seconds: float) -> dict[str, Any]:
    """The body as a JSON object checked against the route's schema; ``{}`` for a route
    without a body (which is still read, so its size and time limits hold)."""
    raw = await read_body(request, within_seconds)
    if validator is None:
        return {}
    if not raw.strip():
        data: Any = {}
    else:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise UnsupportedMediaType("Content-Type must be application/json")
        data = parse_json(raw)
    if not isinstance(data, dict):
        raise ValidationError.for_field("body", "must be a JSON object")
    check(validator, data, "request body")
    return data


def parse_query(
    request: Request, schema: Mapping[str, Any] | None, validator: Draft202012Validator | None
) -> dict[str, Any]:
    if schema is None or validator is None:
        return {}
    known = set(schema.get("properties", {}))
    # Unknown query parameters are ignored (documented): proxies add cache-busters.
    data = {k: v for k, v in request.query_params.items() if k in known}
    check(validator, data, "query")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _OutOfRange:
    """Where the body held a number beyond 64 bits (``2**63``, ``1e19``, ``1e400``): found again
    by :func:`_first_invalid`, which names its path. Stores keep integers in 64 bits (BSON's
    int64, SQLite's INTEGER), and the OpenAPI document bounds every number so
    (:mod:`entrypoints.http.storable_schema`)."""


_OUT_OF_RANGE = _OutOfRange()
#: "out of range" in words a client can act on
OUT_OF_RANGE_MESSAGE = "is a number out of range (beyond 64 bits: ±9223372036854775807)"
#: a field name no store keeps as it is: BSON (MongoDB) ends a name at its first NUL
BAD_FIELD_NAME_MESSAGE = "has a field name that contains NUL"
_INT64 = range(-(2**63), 2**63)


def _finite_float(text: str) -> float | _OutOfRange:
    value = float(text)  # 1e400 is inf; beyond 64 bits (1e19) no integer field could hold it either
    return value if math.isfinite(value) and _INT64.start <= value < _INT64.stop else _OUT_OF_RANGE


def _bounded_int(text: str) -> int | _OutOfRange:
    try:
        value = int(text)
    except ValueError:  # more digits than Python converts
        return _OUT_OF_RANGE
    return value if value in _INT64 else _OUT_OF_RANGE


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > limit:
            return level
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def parse_json(raw: bytes) -> Any:
    """Strict JSON: no NaN/Infinity (nor numbers too large for one, nor integers beyond 64
    bits), no lone surrogates (in values or field names), no field name with NUL, at most 32
    levels deep. Anything that would not survive being
    stored and sent back is refused here, as a 400."""

    def bad(message: str) -> ValidationError:
        return ValidationError(
            f"request body is not valid JSON ({message})", errors=[{"path": "body", "message": message}]
        )

    try:
        data = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad("malformed JSON") from None
    except RecursionError:
        raise bad(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:  # NaN, Infinity
        raise bad("a number that is not a finite JSON number") from None
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise bad(f"nested deeper than {MAX_JSON_DEPTH} levels")
    where = _first_invalid(data)
    if where is not None:
        path, message, valid_json = where
        text = f"{path} {message}" if valid_json else f"request body is not valid JSON ({path} {message})"
        raise ValidationError(text, errors=[{"path": path, "message": message}])
    return data


def _is_unicode(text: str) -> bool:
    """False for a lone surrogate (``"\\ud800"`` in JSON): valid JSON syntax, but not text that
    can be stored as UTF-8 or sent back."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_invalid(data: Any) -> tuple[str, str, bool] | None:
    """The dotted path of the first value that cannot be kept, what is wrong with it, and
    whether it was still valid JSON: a number out of range (valid JSON, but no number we can
    store), a field name or string that is not valid Unicode (the path never contains one: a bad
    name is reported at its parent)."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        item, path = stack.pop()
        if item is _OUT_OF_RANGE:
            return path or "body", OUT_OF_RANGE_MESSAGE, True
        if isinstance(item, str) and not _is_unicode(item):
            return path or "body", "is not valid Unicode text (a lone surrogate)", False
        if isinstance(item, dict):
            for key, value in item.items():
                if not _is_unicode(key):
                    return path or "body", "has a field name that is not valid Unicode text (a lone surrogate)", False
                if "\x00" in key:
                    return path or "body", BAD_FIELD_NAME_MESSAGE, True
                stack.append((value, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            stack.extend((v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(item))
    return None
