"""The old service's proxy mode: connector routes forwarded to the backend connector service."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters.http.backend_client import map_backend_status
from connector_core.ports.backend_client import BackendConnectorClient
from entrypoints.http.errors import HTTP_CODES, error_response, with_challenge
from entrypoints.http.validation import parse_json, read_body


async def proxy(
    request: Request, backend: BackendConnectorClient, body_timeout: float, *, rename_base_url: bool = False
) -> Response:
    """Forward to the backend connector service (Authorization and Content-Type only), map its
    status as the old service did, pass its body through. With ``rename_base_url`` (the
    compatibility profile) a JSON object body's ``baseUrl`` is sent as ``base_url``, as the old
    service did (its backend reads that name); the body must then be valid JSON (else 400)."""
    raw = await read_body(request, body_timeout)
    if rename_base_url:
        raw = _base_url_renamed(raw)
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
    answer = await backend.forward(
        request.method, request.url.path, headers=headers, body=raw or None, query=dict(request.query_params)
    )
    status = map_backend_status(answer.status)
    if status >= 400:
        try:
            body = json.loads(answer.body or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = {}
        if not (isinstance(body, dict) and isinstance(body.get("error"), dict)):
            message = body.get("message") if isinstance(body, dict) else None
            detail = body.get("detail") if isinstance(body, dict) else None
            text = message or detail or f"connector service answered {answer.status}"
            return error_response(status, HTTP_CODES.get(status, "BACKEND_ERROR"), str(text)[:500])
        return JSONResponse(body, status_code=status, headers=with_challenge(status))
    return Response(answer.body, status_code=status, media_type=answer.content_type or "application/json")


def _base_url_renamed(raw: bytes) -> bytes:
    """``{"baseUrl": ...}`` → ``{"base_url": ...}``. The body is read as strictly as our own
    routes read theirs (:func:`parse_json`: a lone surrogate, NaN, a body nested too deep are a
    400 naming the field, never forwarded nor a 500); any other JSON is forwarded untouched."""
    if not raw.strip():
        return raw
    body = parse_json(raw)
    if not isinstance(body, dict) or "baseUrl" not in body:
        return raw
    renamed = {("base_url" if k == "baseUrl" else k): v for k, v in body.items()}
    # ASCII escapes: whatever the body holds, the encoding cannot fail
    return json.dumps(renamed, separators=(",", ":")).encode("ascii")
