"""``connector-manager health``: every dependency of the deployment, checked from here."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from attrs import evolve

from connector_core.errors import Unavailable
from connector_core.ports.health import HealthCheck
from entrypoints.bootstrap import Container
from entrypoints.cli.options import add_settings_options
from entrypoints.cli.output import Output, add_output_options
from entrypoints.cli.runtime import with_container
from entrypoints.settings import Settings, SettingsError

CHECK_SECONDS = 5.0

#: the setting a start-up error names → the health check of that dependency
#: (the names ``entrypoints/infrastructure.py`` gives its checks)
_CHECK_OF_SETTING = {
    "mongo_url": "storage",
    "redis_url": "redis",
    "redis_sentinels": "redis",
    "etcd_endpoint": "etcd",
    "etcd_endpoints": "etcd",
    "kafka_bootstrap": "kafka",
    "backend_url": "connectorBackend",
    "iam_mongo_url": "iam",
}


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


def _unreachable(exc: SettingsError) -> dict[str, Any] | None:
    """The dependency a failed start-up could not reach, as a check that is down; None when the
    error is not about reaching one (a malformed setting: that stays an error). The opener turns
    the factory's :class:`Unavailable` into its setting's error, keeping it as the context."""
    if not isinstance(exc.__context__, Unavailable) or not exc.errors:
        return None
    setting = exc.errors[0]["path"]
    name = _CHECK_OF_SETTING.get(setting, setting)
    return {"name": name, "status": "unhealthy", "required": True, "reason": exc.__context__.message}


def run(args: argparse.Namespace, settings: Settings) -> int:
    async def work(container: Container) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(_probe(c) for c in container.health_checks)))

    # a server that does not answer within a probe's time is down: start-up need not wait longer
    budget = min(settings.start_up_timeout_seconds, CHECK_SECONDS)
    try:
        checks = with_container(evolve(settings, start_up_timeout_seconds=budget), work)
    except SettingsError as exc:
        failed = _unreachable(exc)
        if failed is None:
            raise
        checks = [failed]
    down = any(c["status"] != "healthy" and c["required"] for c in checks)
    status = "unhealthy" if down else "healthy"
    out = Output.of(args)
    rows = [[c["name"], c["status"], c["required"], c.get("reason", "")] for c in checks]
    out.table(
        ["dependency", "status", "required", "reason"],
        rows,
        data={"status": status, "services": checks},
        title=f"connector-manager: {status}",
    )
    return 1 if down else 0
