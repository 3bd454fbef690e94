"""The bare applications the benchmarks measure ours against, and the token endpoint the
refresh benchmarks call.

- :func:`bare_app`: what a minimal service on the same stack does for the hot reads: a plain
  Starlette route, one ``jwt.decode`` (HS256, the same secret and token as ours) and a
  ``JSONResponse`` of a document of the same size as ours (ours' own answer, parsed once).
- :func:`token_endpoint`: an OAuth token endpoint answering every refresh grant after
  ``latency`` seconds, as a provider across a network would.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import parse_qs

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def bare_app(jwt_secret: str, documents: dict[str, Any]) -> Starlette:
    """``documents`` maps each route path to the JSON document it answers."""

    def authorized(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        try:
            jwt.decode(header.removeprefix("Bearer "), jwt_secret, algorithms=["HS256"])
        except jwt.PyJWTError:
            return False
        return True

    def route(path: str, document: Any) -> Route:
        async def answer(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"error": "unauthenticated"}, status_code=401)
            return JSONResponse(document)

        return Route(path, answer, methods=["GET"])

    return Starlette(routes=[route(path, doc) for path, doc in documents.items()])


def token_endpoint(latency: float) -> Starlette:
    async def token(request: Request) -> Response:
        form = parse_qs((await request.body()).decode())
        if form.get("grant_type") != ["refresh_token"]:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        await asyncio.sleep(latency)
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(24),
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": secrets.token_urlsafe(24),
                "scope": "offline_access files.read",
            }
        )

    return Starlette(routes=[Route("/token", token, methods=["POST"])])
