"""Refresh throughput: one refresher with concurrency 1 (the baseline) against concurrency 8 and
against four refreshers sharing one SQLite file, same provider (answering after --latency
seconds, like a provider across a network), same run.

    .venv/bin/python -m bench.bench_refresh [--tokens 200] [--latency 0.05]

Prints tokens/second and each configuration's speed-up over the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from entrypoints.bootstrap import Container, build_container
from entrypoints.settings import load_settings
from tests.due_tokens import seed_due_token
from tests.fakes.oauth_provider import FakeOAuthProvider

ENV = {"CM_MASTER_KEY": "bench-refresh"}


async def container(data_dir: Path, idp: FakeOAuthProvider) -> Container:
    provider = {
        "key": "benchIdp",
        "apps": ["BENCH"],
        "oauth": {
            "authorizeUrl": idp.authorize_url,
            "tokenUrl": idp.token_url,
            "defaultScopes": ["offline_access", "files.read"],
            "scopeApps": {"files.read": "BENCH"},
        },
    }
    settings = load_settings(env=ENV, data_dir=data_dir, run_refresher=False)
    from attrs import evolve

    return await build_container(evolve(settings, custom_providers=(provider,)), env=ENV)


async def seed(c: Container, idp: FakeOAuthProvider, n: int) -> None:
    for i in range(n):
        await seed_due_token(c, idp, f"org-{i}", key="benchIdp", app="BENCH")


async def run(n: int, concurrency: int, refreshers: int, latency: float) -> float:
    with tempfile.TemporaryDirectory() as tmp, FakeOAuthProvider() as idp:
        idp.register_client("cid", "sec")
        if latency:
            idp.set_fault("slow", delay=latency)  # a provider across a network
        containers = [await container(Path(tmp), idp) for _ in range(refreshers)]
        await seed(containers[0], idp, n)
        start = time.perf_counter()
        await asyncio.gather(*(c.refresher.refresh_due(batch_size=n, concurrency=concurrency) for c in containers))
        elapsed = time.perf_counter() - start
        assert idp.stats()["refresh_grants"] == n
        for c in containers:
            await c.aclose()
    return n / elapsed


async def main(n: int, latency: float) -> None:
    base = await run(n, 1, 1, latency)
    rows = [
        ("1 refresher, concurrency 1 (baseline)", base),
        ("1 refresher, concurrency 8", await run(n, 8, 1, latency)),
        ("4 refreshers on one SQLite file, concurrency 8", await run(n, 8, 4, latency)),
    ]
    print(f"{n} due tokens, provider answers after {latency * 1000:.0f} ms")
    for name, rate in rows:
        print(f"{name:48s} {rate:8.1f} tokens/s  x{rate / base:5.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05, help="provider answer delay, seconds")
    args = parser.parse_args()
    asyncio.run(main(args.tokens, args.latency))
