"""What the OpenAPI document says of free-form JSON in request bodies: what :func:`parse_json`
refuses is written into the schemas, so a client (or a generated test) knows it in advance. No
field name holds NUL, and every number lies within 64 bits (what the stores keep: BSON's int64,
SQLite's INTEGER); the rest of a body's limits are the route's own schema."""

from __future__ import annotations

from typing import Any

#: the component every free-form value refers to (recursive: objects and arrays of it)
STORABLE_VALUE = "StorableValue"
_REF = {"$ref": f"#/components/schemas/{STORABLE_VALUE}"}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: a field name without NUL
NAME_PATTERN = "^[^\\x00]*$"

STORABLE_VALUE_SCHEMA: dict[str, Any] = {
    "description": "Any JSON value a store keeps: field names without NUL, numbers within 64 bits.",
    "anyOf": [
        {"type": "object", "propertyNames": {"pattern": NAME_PATTERN}, "additionalProperties": _REF},
        {"type": "array", "items": _REF},
        {"type": ["string", "boolean", "null"]},
        {"type": "number", "minimum": INT64_MIN, "maximum": INT64_MAX},
    ],
}


#: keywords whose value is a map of names to schemas, a schema, or a list of schemas
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SCHEMAS = ("items", "additionalProperties", "propertyNames", "not", "if", "then", "else", "contains")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")


def storable(schema: Any) -> Any:
    """``schema`` (a request body's) with its free-form parts bounded as :func:`parse_json`
    bounds them: an object whose names or extra fields it leaves open gets the name pattern and
    :data:`STORABLE_VALUE` for its extra fields, an open array gets it for its items, a number
    without bounds gets the 64-bit ones. A copy; ``schema`` is not changed. Only subschemas are
    visited (``enum``, ``default``, ``examples`` are values, kept as they are)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: storable(sub) for name, sub in out[key].items()}
    for key in _SCHEMAS:
        if isinstance(out.get(key), dict):
            out[key] = storable(out[key])
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [storable(sub) for sub in out[key]]
    kinds = out.get("type")
    kinds = set(kinds) if isinstance(kinds, list) else {kinds} if isinstance(kinds, str) else set()
    if "object" in kinds:
        out.setdefault("propertyNames", {"pattern": NAME_PATTERN})
        out.setdefault("additionalProperties", _REF)
    if "array" in kinds:
        out.setdefault("items", _REF)
    if kinds & {"number", "integer"}:
        out.setdefault("minimum", INT64_MIN)
        out.setdefault("maximum", INT64_MAX)
    return out
