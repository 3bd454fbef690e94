"""Bulk refresh: the refresher on the embedded default (SQLite) refreshing N due tokens against
a local token endpoint that answers after ``latency`` seconds, against raw
``httpx.AsyncClient`` POSTs of the same refresh grants to the same endpoint at the same
concurrency. The endpoint is its own process. Figures are tokens per second.

Every round starts with all N tokens due: the refresher's clock moves on by a little more
than a token's lifetime between rounds (the endpoint grants an hour)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from attrs import evolve

from bench.harness import Row, alternate, from_pairs
from bench.processes import served
from bench.serve_app import BENCH_ENV

KEY, APP = "benchIdp", "BENCH"
SCOPES = ("offline_access", "files.read")


class SteppingClock:
    """The system clock, moved forward by :meth:`advance`."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by


async def _container(data_dir: Path, token_url: str, clock: SteppingClock):  # type: ignore[no-untyped-def]
    from entrypoints.bootstrap import build_container
    from entrypoints.settings import load_settings

    provider = {
        "key": KEY,
        "apps": [APP],
        "oauth": {
            "authorizeUrl": "http://127.0.0.1:1/authorize",
            "tokenUrl": token_url,
            "defaultScopes": list(SCOPES),
            "scopeApps": {"files.read": APP},
        },
    }
    settings = load_settings(env=BENCH_ENV, data_dir=data_dir, run_refresher=False)
    return await build_container(evolve(settings, custom_providers=(provider,)), env=BENCH_ENV, clock=clock)


async def _seed(container, n: int) -> None:  # type: ignore[no-untyped-def]
    """``n`` orgs, each with the connector configured, authorized and holding a due token."""
    from connector_core.services.connectors import ConfigUpdate
    from tests.due_tokens import store_due_token

    for i in range(n):
        org = f"org-{i}"
        update = ConfigUpdate(
            base_url="http://localhost:3000", auth={"clientId": "cid", "clientSecret": "sec"}, sync={}, filters={}
        )
        await container.connectors.update_configuration(org, "seeder", KEY, update)
        await store_due_token(container, org, f"refresh-{org}", key=KEY, app=APP)


async def run(*, smoke: bool, latency: float = 0.02) -> list[Row]:
    rounds, n = (2, 16) if smoke else (3, 2000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cm-bench-") as tmp, served(["token", "--latency", str(latency)]) as port:
        token_url = f"http://127.0.0.1:{port}/token"
        clock = SteppingClock()
        container = await _container(Path(tmp), token_url, clock)
        client = httpx.AsyncClient(timeout=30)  # one client for every round, as ours keeps one
        try:
            await _seed(container, n)
            for concurrency in (8, 32):

                async def ours(concurrency: int = concurrency) -> dict[str, float]:
                    clock.advance(timedelta(hours=1, minutes=5))  # every token due again
                    t = time.perf_counter()
                    report = await container.refresher.refresh_due(batch_size=n, concurrency=concurrency)
                    elapsed = time.perf_counter() - t
                    if report.refreshed != n:
                        raise RuntimeError(f"refreshed {report.refreshed} of {n}: {report}")
                    return {"rate": n / elapsed}

                async def raw(concurrency: int = concurrency) -> dict[str, float]:
                    gate = asyncio.Semaphore(concurrency)

                    async def one(i: int) -> None:
                        async with gate:
                            form = {
                                "grant_type": "refresh_token",
                                "refresh_token": f"refresh-org-{i}",
                                "client_id": "cid",
                                "client_secret": "sec",
                            }
                            r = await client.post(token_url, data=form)
                            r.raise_for_status()
                            r.json()

                    t = time.perf_counter()
                    await asyncio.gather(*(one(i) for i in range(n)))
                    return {"rate": n / (time.perf_counter() - t)}

                pairs = await alternate(rounds, ours, raw)
                rows.append(
                    from_pairs(
                        f"bulk refresh, concurrency {concurrency}",
                        "raw httpx.AsyncClient",
                        "tokens/s",
                        pairs,
                        "rate",
                        ">= 0.8",
                        f"{n:,} due tokens, token endpoint answering after {latency * 1000:g} ms",
                    )
                )
        finally:
            await client.aclose()
            await container.aclose()
    return rows
