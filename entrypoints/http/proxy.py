"""The old service's proxy mode: connector routes forwarded to the backend connector service."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters.http.backend_client import map_backend_status
from connector_core.ports.backend_client import BackendConnectorClient
from entrypoints.http.errors import HTTP_CODES, error_response, with_challenge
from entrypoints.http.validation import read_body


async def proxy(request: Request, backend: BackendConnectorClient, body_timeout: float) -> Response:
    """Forward to the backend connector service (Authorization and Content-Type only), map its
    status as the old service did, pass its body through."""
    raw = await read_body(request, body_timeout)
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
