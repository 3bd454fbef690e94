"""Hot reads over HTTP, ours against a bare Starlette app on the same uvicorn.

Ours: ``connector-manager``'s app on the embedded default (SQLite in a data dir), one org with
three configured connectors, two of them enabled. The baseline: :func:`bench.baseline_apps.bare_app`
answering the same paths with a pyjwt HS256 check of the same token and the same JSON document
(ours' answer, captured once). Each server is its own process, and so is the load generator.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import Row, alternate, from_pairs
from bench.processes import load, served
from bench.serve_app import BENCH_ENV

ORG = "bench-org"
PATHS = {"active": "/api/v1/connectors/active", "config": "/api/v1/connectors/config/confluence"}


async def seed(data_dir: Path) -> tuple[str, str]:
    """Three configured connectors, two enabled; an admin user token for the org and the secret
    it is signed with (the baseline checks the very same signature)."""
    from connector_core.services.connectors import ConfigUpdate
    from entrypoints.bootstrap import build_container
    from entrypoints.http.auth import issue_user_token
    from entrypoints.settings import load_settings

    container = await build_container(load_settings(env=BENCH_ENV, data_dir=data_dir), env=BENCH_ENV)
    try:
        for key in ("confluence", "jira", "slack"):
            auth = {"authType": "API_TOKEN", "email": "a@x.example", "apiToken": "t"}
            if key == "slack":
                auth = {"authType": "API_TOKEN", "botToken": "xoxb-bench"}
            update = ConfigUpdate(base_url="https://x.example", auth=auth, sync={}, filters={})
            await container.connectors.update_configuration(ORG, "bench", key, update)
            if key != "slack":
                await container.connectors.set_enabled(ORG, "bench", key, True)
        secret = container.service_secrets.jwt_secret
        token = issue_user_token(
            secret,
            user_id="bench",
            org_id=ORG,
            email="bench@x.example",
            admin=True,
            ttl=86_400,
            now=int(time.time()),
        )
        return token, secret
    finally:
        await container.aclose()


async def run(*, smoke: bool, loop: str = "asyncio", http: str = "h11") -> list[Row]:
    rounds, duration, warmup = (2, 0.2, 0.05) if smoke else (5, 3.0, 0.5)
    stack = ["--loop", loop, "--http", http]
    with tempfile.TemporaryDirectory(prefix="cm-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        token, secret = await seed(data_dir)
        auth = [f"Authorization: Bearer {token}"]
        with served(["ours", "--data-dir", str(data_dir), *stack]) as ours_port:
            documents = {}
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
                for path in PATHS.values():
                    r = await client.get(f"http://127.0.0.1:{ours_port}{path}")
                    r.raise_for_status()
                    documents[path] = r.json()
            assert documents[PATHS["active"]], "no enabled connector to list"
            spec = Path(tmp) / "bare.json"
            spec.write_text(json.dumps({"jwt_secret": secret, "documents": documents}))
            with served(["bare", "--spec", str(spec), *stack]) as bare_port:
                rows = []
                for name, path in PATHS.items():

                    def measure(port: int, path: str = path) -> dict[str, float]:
                        url = f"http://127.0.0.1:{port}{path}"
                        return load(url, auth, concurrency=16, duration=duration, warmup=warmup)

                    pairs = await alternate(
                        rounds,
                        lambda: asyncio.to_thread(measure, ours_port),
                        lambda: asyncio.to_thread(measure, bare_port),
                    )
                    label = "GET /active" if name == "active" else "GET /config/{name}"
                    suffix = "" if (loop, http) == ("asyncio", "h11") else f" [{loop}+{http}]"
                    bare = "bare Starlette + pyjwt"
                    rows.append(from_pairs(label + suffix, bare, "req/s", pairs, "rps", ">= 0.8", "concurrency 16"))
                    if name == "active":
                        rows.append(
                            from_pairs(f"p99 latency of GET /active{suffix}", bare, "ms", pairs, "p99_ms", "<= 1.5")
                        )
    return rows
