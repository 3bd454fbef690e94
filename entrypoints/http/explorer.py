"""``GET /docs``: an API explorer (Swagger UI) for ``/openapi.json``, and ``GET /``: where things are.

The explorer's files come from the ``swagger-ui-bundle`` package (installed with the service),
so nothing is fetched from the internet at run time; the page's Content-Security-Policy lets
the browser load from this service only. That Swagger UI (4.15) reads OpenAPI 3.0 only, so it
is given ``/docs/openapi.json``: the same document with the 3.1 spellings it does not know
written the 3.0 way (``type: [T, "null"]`` → ``type: T, nullable: true``).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"
METRICS_PATH = "/metrics"

#: what the service offers a person or a script that lands on ``/``
PLACES = {
    "admin": ("/admin", "Web console: connectors, health, events"),
    "docs": ("/docs", "API explorer"),
    "openapi": ("/openapi.json", "OpenAPI document"),
    "health": ("/api/v1/health", "Health of the service and its dependencies"),
    "metrics": (METRICS_PATH, "Prometheus metrics"),
}

_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
)

_DOCS_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Connector Manager API</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
<link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""

# validatorUrl null: Swagger UI would otherwise send the document to an online validator
_INIT_JS = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/docs/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
};
"""


async def docs_page(request: Request) -> Response:
    return HTMLResponse(_DOCS_PAGE, headers={"Content-Security-Policy": _CSP})


async def docs_init(request: Request) -> Response:
    return Response(_INIT_JS, media_type="text/javascript")


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


async def index(request: Request) -> Response:
    """JSON for scripts (``Accept: application/json``), a small page for browsers."""
    if _wants_json(request):
        return JSONResponse({name: path for name, (path, _) in PLACES.items()})
    items = "\n".join(
        f'<li><a href="{html.escape(path)}">{html.escape(path)}</a> — {html.escape(text)}</li>'
        for path, text in PLACES.values()
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Connector Manager</title></head>\n'
        f"<body>\n<h1>Connector Manager</h1>\n<ul>\n{items}\n</ul>\n</body>\n</html>\n"
    )
    return HTMLResponse(page, headers={"Content-Security-Policy": _CSP})


#: pages for people and scrapers, not operations of the API (not in the OpenAPI document)
OPERATOR_PAGES = frozenset({"/", "/docs", "/docs/init.js", "/docs/openapi.json", METRICS_PATH})


def as_openapi_30(node: Any) -> Any:
    """An OpenAPI 3.1 document (or part) as 3.0 spells it, for explorers that read 3.0 only."""
    if isinstance(node, list):
        return [as_openapi_30(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_openapi_30(v) for k, v in node.items()}
    kinds = out.get("type")
    if isinstance(kinds, list):
        concrete = [k for k in kinds if k != "null"]
        if len(concrete) == 1:
            out["type"] = concrete[0]
        else:
            del out["type"]
            out["anyOf"] = [{"type": k} for k in concrete]
        if "null" in kinds:
            out["nullable"] = True
    if isinstance(out.get("openapi"), str):
        out["openapi"] = "3.0.3"
    return out


def explorer_routes(document: Callable[[], dict[str, Any]]) -> list[BaseRoute]:
    """The pages; ``document`` gives the current OpenAPI document."""

    async def explorer_document(request: Request) -> Response:
        return JSONResponse(as_openapi_30(document()))

    return [
        Route("/", index, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
        Route("/docs/init.js", docs_init, methods=["GET"]),
        Route("/docs/openapi.json", explorer_document, methods=["GET"]),
        Mount(ASSETS, app=StaticFiles(directory=str(swagger_ui_path)), name="docs-assets"),
    ]
