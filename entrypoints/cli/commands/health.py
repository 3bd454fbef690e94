"""``connector-manager health``: every dependency of the deployment, checked from here."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from connector_core.ports.health import HealthCheck
from entrypoints.bootstrap import Container
from entrypoints.cli.options import add_settings_options
from entrypoints.cli.output import Output, add_output_options
from entrypoints.cli.runtime import with_container
from entrypoints.settings import Settings

CHECK_SECONDS = 5.0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    p = commands.add_parser(
        "health",
        help="check every dependency (storage, secrets, broker, cache) of the deployment",
        description="Check each dependency the settings choose, as GET /api/v1/health does, from this"
        " process; exit 1 when a required one is down.",
    )
    add_settings_options(p)
    add_output_options(p)
    p.set_defaults(run=run)


async def _probe(check: HealthCheck) -> dict[str, Any]:
    try:
        healthy = await asyncio.wait_for(check.check(), timeout=CHECK_SECONDS)
    except Exception:
        healthy = False
    return {"name": check.name, "status": "healthy" if healthy else "unhealthy", "required": check.required}


def run(args: argparse.Namespace, settings: Settings) -> int:
    async def work(container: Container) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(_probe(c) for c in container.health_checks)))

    checks = with_container(settings, work)
    down = any(c["status"] != "healthy" and c["required"] for c in checks)
    status = "unhealthy" if down else "healthy"
    out = Output.of(args)
    rows = [[c["name"], c["status"], c["required"]] for c in checks]
    out.table(
        ["dependency", "status", "required"],
        rows,
        data={"status": status, "services": checks},
        title=f"connector-manager: {status}",
    )
    return 1 if down else 0
