"""The OpenAPI document says what parse_json refuses in free-form JSON (field names with NUL,
numbers beyond 64 bits), so a schema-valid request is never refused for it (the schemathesis
runs found such 400s: ST202)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from connector_core.errors import ValidationError
from entrypoints.http.openapi import openapi_document
from entrypoints.http.storable_schema import storable
from entrypoints.http.validation import parse_json

BASE = "https://x.example"


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"baseUrl": BASE, "filters": {"a": {"b": [1, 2.5, None, "x", {"$c.d": True}]}}}, True),
        ({"baseUrl": BASE, "filters": {"a": -(2**63), "b": 2**63 - 1}}, True),
        ({"baseUrl": BASE, "filters": {"a\x00b": 1}}, False),
        ({"baseUrl": BASE, "filters": {"a": [{"b\x00": 1}]}}, False),
        ({"baseUrl": BASE, "filters": {"a": [2**63]}}, False),
        ({"baseUrl": BASE, "filters": {"a": {"b": 1e19}}}, False),
    ],
    ids=["plain", "int64-bounds", "nul-name", "nested-nul-name", "2**63", "1e19"],
)
def test_free_form_config_is_bounded_as_the_parser_bounds_it(body: dict[str, Any], valid: bool) -> None:
    doc = openapi_document()
    put = doc["paths"]["/api/v1/connectors/config/{name}"]["put"]
    schema = {**put["requestBody"]["content"]["application/json"]["schema"], "components": doc["components"]}
    assert Draft202012Validator(schema).is_valid(body) is valid
    raw = json.dumps(body).encode()
    if valid:
        assert parse_json(raw) == body
    else:
        with pytest.raises(ValidationError):
            parse_json(raw)


def test_only_subschemas_are_changed() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"type": {"type": "string", "default": {"type": "object"}}, "n": {"type": "integer"}},
        "enum": [{"type": "object"}],
    }
    out = storable(schema)
    assert out["properties"]["type"] == {"type": "string", "default": {"type": "object"}}
    assert out["properties"]["n"] == {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
    assert out["enum"] == [{"type": "object"}]
    assert schema["properties"]["n"] == {"type": "integer"}  # a copy
