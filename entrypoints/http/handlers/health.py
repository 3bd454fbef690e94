"""Health of the service and each dependency."""

from __future__ import annotations

from starlette.responses import Response

from entrypoints.health_report import check_health
from entrypoints.http.endpoint import Call, ok
from entrypoints.http.views import iso


async def health(call: Call) -> Response:
    report = await check_health(call.app.container.health_checks, call.app.health_timeout)
    body = {
        "status": "healthy" if report.healthy else "unhealthy",
        "timestamp": iso(report.checked_at),
        "services": {d.name: "healthy" if d.healthy else "unhealthy" for d in report.dependencies},
    }
    return ok(body, status=200 if report.healthy else 503)
