"""Health of the service and each dependency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from starlette.responses import Response

from connector_core.ports.health import HealthCheck
from entrypoints.http.endpoint import Call, ok


async def health(call: Call) -> Response:
    checks = call.app.container.health_checks

    async def probe(check: HealthCheck) -> tuple[str, str, bool]:
        try:
            healthy = await asyncio.wait_for(check.check(), timeout=call.app.health_timeout)
        except (TimeoutError, Exception):
            healthy = False
        return check.name, "healthy" if healthy else "unhealthy", check.required

    results = await asyncio.gather(*(probe(c) for c in checks))
    services = {name: state for name, state, _ in results}
    down = any(state != "healthy" and required for _, state, required in results)
    body = {
        "status": "unhealthy" if down else "healthy",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "services": services,
    }
    return ok(body, status=503 if down else 200)
