"""Render docs/api.md from the OpenAPI document: ``python -m entrypoints.http.docs > docs/api.md``.
A test fails when the committed file differs from what this prints."""

from __future__ import annotations

import json
import sys
from typing import Any

from entrypoints.http.openapi import openapi_document

_ACCESS = {"userToken": "user token", "scopedToken": "scoped token (`fetch:config`)"}


def _access(op: dict[str, Any]) -> str:
    if not op["security"]:
        return "none"
    scheme = next(iter(op["security"][0]))
    text = _ACCESS[scheme]
    if scheme == "userToken" and "403" in op["responses"]:
        text = "admin user token"
    return text


def render(doc: dict[str, Any]) -> str:
    out = [
        "# HTTP API",
        "",
        "Generated from `GET /openapi.json` by `python -m entrypoints.http.docs`; a test keeps them equal.",
        "",
        doc["info"]["description"],
        "",
        'Every error has the body `{"error": {"code", "message", "metadata"?}}`; validation errors list',
        "each field in `metadata.errors[] = {path, message}`.",
        "",
        "| method | path | access | summary |",
        "|---|---|---|---|",
    ]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            out.append(f"| {method.upper()} | `{path}` | {_access(op)} | {op['summary']} |")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            out += ["", f"## {method.upper()} `{path}`", "", op["summary"] + ".", "", f"Access: {_access(op)}."]
            params = [p for p in op["parameters"] if p["in"] == "query"]
            if params:
                out += [
                    "",
                    "Query: "
                    + ", ".join(f"`{p['name']}`{' (required)' if p['required'] else ''}" for p in params)
                    + ".",
                ]
            headers = [p for p in op["parameters"] if p["in"] == "header"]
            if headers:
                out += ["", "Headers: " + "; ".join(f"`{p['name']}`: {p['description']}" for p in headers)]
            if "requestBody" in op:
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                out += ["", "Body:", "", "```json", json.dumps(schema, indent=2), "```"]
            codes = ", ".join(f"{code} {resp['description']}" for code, resp in op["responses"].items())
            out += ["", f"Responses: {codes}."]
    return "\n".join(out) + "\n"


def main() -> None:
    sys.stdout.write(render(openapi_document()))


if __name__ == "__main__":
    main()
