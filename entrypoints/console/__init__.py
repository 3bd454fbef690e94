"""The web console at ``/admin``: server-rendered pages (Jinja2 templates, one stylesheet, a
little JavaScript, all shipped in this package) over the same services as the HTTP API."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from entrypoints.console import actions, pages, signin
from entrypoints.console.web import BASE, Handler, Page, StateGetter, page

__all__ = ["console_routes"]


async def _not_found(p: Page) -> Response:
    return p.error(404, "Not found", "There is no console page here.")


async def _to_list(request: Request) -> Response:
    return RedirectResponse(f"{BASE}/", status_code=307)


def console_routes(state: StateGetter) -> list[BaseRoute]:
    """The console's routes, mounted at ``/admin`` (``state`` gives the current generation)."""
    c = "/connectors/{name}"

    def connectors(handler: Handler, *, form: bool = False) -> Any:
        """A connector page or action: not in proxy mode (see :func:`pages.managed_here`)."""
        return page(state, pages.managed_here(handler), form=form)

    return [
        Route(BASE, _to_list, methods=["GET"]),
        Mount(
            BASE,
            routes=[
                Route("/", connectors(pages.connectors), methods=["GET"]),
                Route(c, connectors(pages.connector), methods=["GET"]),
                Route(f"{c}/config", connectors(actions.save_config, form=True), methods=["POST"]),
                Route(f"{c}/toggle", connectors(actions.toggle, form=True), methods=["POST"]),
                Route(f"{c}/filters", connectors(actions.save_filters, form=True), methods=["POST"]),
                Route(f"{c}/connect", connectors(actions.connect, form=True), methods=["POST"]),
                Route(f"{c}/revoke", connectors(actions.revoke_form), methods=["GET"]),
                Route(f"{c}/revoke", connectors(actions.revoke, form=True), methods=["POST"]),
                Route("/oauth/{rest:path}", connectors(actions.callback), methods=["GET"]),
                Route("/events", page(state, pages.events), methods=["GET"]),
                Route("/health", page(state, pages.health), methods=["GET"]),
                Route("/signin", page(state, signin.signin_form, admin=False), methods=["GET"]),
                Route("/signin", page(state, signin.signin, admin=False, form=True), methods=["POST"]),
                Route("/link/{token}", page(state, signin.signin_link, admin=False), methods=["GET"]),
                Route("/signout", page(state, signin.signout, admin=False, form=True), methods=["POST"]),
                Mount("/static", StaticFiles(packages=[("entrypoints.console", "static")]), name="console-static"),
                Route("/{rest:path}", page(state, _not_found, admin=False), methods=["GET"]),
            ],
        ),
    ]
