"""Hot-path benchmark: reading connectors vs the cheapest route, same process, same run.

    .venv/bin/python -m bench.bench_hot_path [--requests 2000]

Prints each route's mean latency as a ratio to ``GET /api/v1/health`` (the baseline: auth-free,
no storage). Listing must stay a small multiple of it: one storage round trip, no decryption.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from entrypoints.bootstrap import build_container
from entrypoints.http.app import create_app
from entrypoints.http.auth import issue_user_token
from entrypoints.settings import load_settings


async def measure(client: httpx.AsyncClient, path: str, headers: dict[str, str], n: int) -> float:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        r = await client.get(path, headers=headers)
        samples.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
    return statistics.mean(sorted(samples)[: int(n * 0.95)])


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"CM_MASTER_KEY": "bench"}
        settings = load_settings(env=env, data_dir=Path(tmp))
        container = await build_container(settings, env=env)
        app = create_app(container)
        token = issue_user_token(
            container.service_secrets.jwt_secret,
            user_id="u",
            org_id="o",
            email="u@x",
            admin=True,
            ttl=600,
            now=int(time.time()),
        )
        h = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as c:
            for key in ("confluence", "jira", "slack"):
                body = {
                    "baseUrl": "https://x.example",
                    "auth": {"authType": "API_TOKEN", "email": "a@x.example", "apiToken": "t"},
                }
                await c.put(f"/api/v1/connectors/config/{key}", json=body, headers=h)
            base = await measure(c, "/api/v1/health", {}, n)
            rows = [("GET /api/v1/health (baseline)", base)]
            for path in ("/api/v1/connectors/", "/api/v1/connectors/active", "/api/v1/connectors/config/confluence"):
                rows.append((f"GET {path}", await measure(c, path, h, n)))
        await container.aclose()
    for name, mean in rows:
        print(f"{name:50s} {mean * 1e6:9.1f} µs  x{mean / base:5.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    asyncio.run(main(parser.parse_args().requests))
