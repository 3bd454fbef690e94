"""Schemas that depend on a connector or on the settings: each connector's configuration and
filter bodies, and the OAuth base URLs the settings allow. Request validation and the served
OpenAPI document use the same ones, so the document says exactly what is accepted."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from connector_core.catalog import CatalogEntry, thaw
from entrypoints.http.validation import WEB_URL_PATTERN

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)"
#: a path after the origin: printable ASCII without backslash, "?" or "#"
_PATH = r'(?:/[!-"$->@-\[\]-~]*)?'
_DEFAULT_PORTS = {"http": 80, "https": 443}

#: what the HTTP layer accepts as an OAuth ``baseUrl`` before the origin allow-list is applied:
#: lower-case http(s) origin, optional port, an optional path; no query, fragment or user info
OAUTH_BASE_PATTERN = rf"^https?://{_LABEL}(?:\.{_LABEL})*(?::{_PORT})?{_PATH}$"

_LOCAL_ORIGINS = rf"http://(?:localhost|127\.0\.0\.1)(?::{_PORT})?"


def allowed_base_pattern(allowed_origins: Iterable[str], service_origins: Iterable[str] = ()) -> str:
    """The ``baseUrl`` values the OAuth routes accept with these allowed origins (empty: any
    port of http://localhost and http://127.0.0.1) and the service's own origins, as one
    pattern."""
    alternatives = []
    allowed = tuple(allowed_origins)
    for origin in (*allowed, *service_origins):
        parts = urlsplit(origin)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS[scheme]
        explicit = f":{port}" if port == _DEFAULT_PORTS[scheme] else ""
        fixed = "" if port == _DEFAULT_PORTS[scheme] else f":{port}"
        alternatives.append(
            f"{re.escape(scheme)}://{re.escape(host)}{fixed}" + (f"(?:{explicit})?" if explicit else "")
        )
    origins = "|".join(alternatives if allowed else [_LOCAL_ORIGINS, *alternatives])
    return rf"^(?:{origins}){_PATH}$"


def _inline(node: Any, defs: Mapping[str, Any]) -> Any:
    """``$ref: #/$defs/x`` replaced by the definition (the document's components do not carry
    a connector's ``$defs``); ``format: uri`` spelled out as the pattern it is checked with."""
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _inline(defs[ref.removeprefix("#/$defs/")], defs)
    out = {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if out.get("format") == "uri":
        del out["format"]
        out["pattern"] = WEB_URL_PATTERN
    return out


def config_body(entry: CatalogEntry) -> dict[str, Any]:
    """``PUT /config/{entry}``: the connector's configuration schema, self-contained."""
    schema = thaw(entry.config_schema)
    body: dict[str, Any] = _inline(schema, schema.get("$defs", {}))
    body["description"] = (
        f"{entry.display_name} configuration. Secret fields (writeOnly) are stored encrypted and never "
        "returned; omit one to keep the stored value, send null to remove it. Secrets only another auth "
        "type uses are removed when the auth type changes."
    )
    for name, prop in body.get("properties", {}).get("auth", {}).get("properties", {}).items():
        if f"auth.{name}" in entry.secret_fields:
            prop["description"] = f"{prop.get('description', '')} null removes the stored value.".lstrip()
    return body


def _filter_value(kind: str, options: tuple[str, ...]) -> dict[str, Any]:
    if kind == "boolean":
        return {"type": ["boolean", "null"]}
    if kind == "string":
        return {"type": ["string", "null"], "maxLength": 1024}
    if kind == "date":
        return {"type": ["string", "null"], "format": "date"}
    items: dict[str, Any] = {"type": "string"}
    if kind == "multiselect":
        items = {"enum": list(options)}
    return {"type": ["array", "null"], "items": items, "maxItems": 1000}


def filters_body(entry: CatalogEntry) -> dict[str, Any]:
    """``POST /filters/{entry}``: each filter the connector offers, with its value's shape."""
    return {
        "type": "object",
        "properties": {
            "filterOptions": {
                "type": "object",
                "properties": {f.key: _filter_value(f.type, f.options) for f in entry.filters},
                "additionalProperties": False,
            }
        },
        "required": ["filterOptions"],
        "additionalProperties": False,
    }
