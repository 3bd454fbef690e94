"""A connector's filter selection."""

from __future__ import annotations

from starlette.responses import Response

from connector_core.errors import ValidationError
from entrypoints.http.endpoint import Call, ok
from entrypoints.http.validation import check_section_sizes, schema_errors
from entrypoints.http.views import filters_json


async def get_filters(call: Call) -> Response:
    view = await call.app.container.connectors.get(call.org_id, call.params["name"])
    return ok(filters_json(view))


async def save_filters(call: Call) -> Response:
    entry = call.app.container.catalog.get(call.params["name"])
    errors = schema_errors(call.app.filters_validator(entry.key), call.body, "")
    if errors:
        # one error per filter, named by its key (filterOptions.<key>), as the core names them
        named: dict[str, str] = {}
        for e in errors:
            named.setdefault(".".join(e["path"].split(".")[:2]), e["message"])
        raise ValidationError("invalid filterOptions", errors=[{"path": p, "message": m} for p, m in named.items()])
    check_section_sizes({"filterOptions": call.body["filterOptions"]})
    view = await call.app.container.connectors.save_filters(
        call.org_id, call.user_id, entry.key, call.body["filterOptions"]
    )
    return ok(filters_json(view))
