"""What the management commands share: one wired container on the deployment's own settings.

The management commands (``connectors``, ``events``, ``health``, ``keys``) act on the store
directly, through the services of the composition root, as ``serve`` does: the same settings,
the same data dir or servers, the same rules (validation, version checks, leases). So they work
whether or not ``serve`` runs, and need no token. A change made here is seen by a running
``serve`` at its next read (with ``cache = "memory"``, after ``cache_ttl_seconds``: that cache
lives in the serving process).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from entrypoints.bootstrap import Container, build_container
from entrypoints.cli.data_dir import require_initialised
from entrypoints.settings import Settings

T = TypeVar("T")


@contextlib.asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[Container]:
    """The deployment's container (refusing a data dir the service never ran on), closed after."""
    require_initialised(settings)
    container = await build_container(settings)
    try:
        yield container
    finally:
        await container.aclose()


def with_container(settings: Settings, work: Callable[[Container], Awaitable[T]]) -> T:
    """Run ``work`` on the deployment's container."""

    async def main() -> T:
        async with opened(settings) as container:
            return await work(container)

    return asyncio.run(main())
