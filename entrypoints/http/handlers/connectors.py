"""The org's connectors: lists and the enable/disable toggle."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.responses import Response

from entrypoints.http.endpoint import Call, ok
from entrypoints.http.views import connector_json

T = TypeVar("T")


async def cached(call: Call, name: str, load: Callable[[], Awaitable[T]]) -> T:
    """Hot reads go through the read cache when one is configured; every committed change to
    the org's connectors invalidates it before the write's response is sent.

    Not under the finished answers (:func:`answer`): those are built when the store's change
    stamp moved, which happens at the commit, while the read cache is invalidated after it (and
    only in the process that wrote): built from the read cache, an answer could keep the old
    state under the new stamp. The stamp already says when to read the store again."""
    cache = call.app.container.read_cache
    if cache is None or call.app.responses is not None:
        return await load()
    result: T = await cache.get_or_load(call.org_id, name, load)
    return result


async def answer(call: Call, name: str, build: Callable[[], Awaitable[Any]]) -> Response:
    """``ok(await build())``, from the finished answers kept for the org while its data has not
    changed, when the store can tell (:mod:`entrypoints.http.response_cache`)."""
    responses = call.app.responses
    if responses is None:
        return ok(await build())
    return Response(await responses.answer(call.org_id, name, build), media_type="application/json")


async def _connector_list(call: Call) -> list[dict[str, Any]]:
    async def load() -> list[dict[str, Any]]:
        return [connector_json(v) for v in await call.app.container.connectors.list(call.org_id)]

    return await cached(call, "connectors", load)


async def list_connectors(call: Call) -> Response:
    return await answer(call, "connectors", lambda: _connector_list(call))


async def list_active(call: Call) -> Response:
    async def build() -> list[dict[str, Any]]:
        return [c for c in await _connector_list(call) if c["isEnabled"]]

    return await answer(call, "connectors:active", build)


async def list_inactive(call: Call) -> Response:
    async def build() -> list[dict[str, Any]]:
        return [c for c in await _connector_list(call) if not c["isEnabled"]]

    return await answer(call, "connectors:inactive", build)


async def toggle(call: Call) -> Response:
    """``{"enabled": true|false}`` sets that state (a retry changes nothing); without it, the
    old service's flip."""
    connectors = call.app.container.connectors
    wanted = call.body.get("enabled")
    if isinstance(wanted, bool):
        view = await connectors.set_enabled(call.org_id, call.user_id, call.params["name"], wanted)
    else:
        view = await connectors.toggle(call.org_id, call.user_id, call.params["name"])
    state = "enabled" if view.connector.is_enabled else "disabled"
    return ok({"message": f"{view.entry.display_name} {state}", "connector": connector_json(view)})
