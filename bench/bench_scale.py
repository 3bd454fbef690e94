"""Scale: 1,000,000 token records (and as many connectors) of 166,667 orgs, seeded in bulk,
against 60 records of 10 orgs, on the embedded default (SQLite) or on MongoDB; not part of
``./scripts/bench`` (minutes to an hour, gigabytes):

    .venv/bin/python -m bench.bench_scale [--storage sqlite|mongo] [--records 1000000]
        [--mongo-url URL] [--keep DIR] [--seed-only] [--smoke]

Each org holds one connector and one token record per catalog entry (six), so 1,000,000
records take 166,667 orgs. Reports, for both sizes: the due-token query (at most 100; every
record of the small store due, 1 % of the large one; each process's first one apart, as on
MongoDB it has no floor yet: see adapters.mongo.read_windows) and one org's connector list, as
time per item returned (median of alternated rounds), and the peak memory (VmHWM) of a real
``connector-manager serve`` (refresher off) that answered 200 list requests for random orgs.
On MongoDB two more rows send the same reads with pymongo alone (the due query's indexed part
with its order and limit; an org's two finds): what the server itself costs for them.

MongoDB: without ``--mongo-url`` the benchmark starts SecantusDB (on disk, in ``--keep`` or a
temporary directory) and stops it at the end; the store is chosen by the settings
(``CM_STORAGE=mongo``, ``CM_MONGO_URL``, ``CM_MONGO_DATABASE``) as the composition root reads
them. With ``--keep DIR`` a store seeded by an earlier run with the same ``--records`` is used
again instead of seeded anew. Seeding: :mod:`bench.scale_seed`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.harness import Row, alternate, format_rows, from_pairs
from bench.processes import ROOT, free_port, stop
from bench.scale_seed import container, org_name, seed, settings_env

SMALL_ORGS = 10


async def per_item(data_dir: Path, env: Mapping[str, str], orgs: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per item of the due-token query and of one org's list, ``rounds`` times each."""
    c = await container(data_dir, env)
    rng = random.Random(11)
    out: dict[str, list[float]] = {"due_first": [], "due": [], "list": []}
    raw = RawReads(env) if env.get("CM_STORAGE") == "mongo" else None
    try:
        for n in range(rounds):
            t = time.perf_counter()
            async with c.ctx.uow() as uow:
                due = await uow.tokens.due_before(c.ctx.clock.now(), 100)
            # on MongoDB a process's first pass has no floor yet (adapters.mongo.read_windows)
            out["due" if n else "due_first"].append((time.perf_counter() - t) / max(len(due), 1))
            org = org_name(rng.randrange(1, orgs))
            t = time.perf_counter()
            views = await c.connectors.list(org)
            out["list"].append((time.perf_counter() - t) / max(len(views), 1))
            if raw is not None:
                got = await asyncio.to_thread(raw, c.ctx.clock.now(), org, len(views))
                for name, seconds in got.items():
                    out.setdefault(name, []).append(seconds)
    finally:
        await c.aclose()
        if raw is not None:
            raw.client.close()
    return out


class RawReads:
    """On MongoDB: the same reads sent with pymongo alone (no adapter, no decryption), what this
    server costs for them: the due records (the query's indexed part, its order and limit) per
    record, and an org's connector and token documents per list item."""

    def __init__(self, env: Mapping[str, str]) -> None:
        from pymongo import MongoClient

        self.client: MongoClient[dict[str, Any]] = MongoClient(env["CM_MONGO_URL"], tz_aware=True)
        self.db = self.client[env["CM_MONGO_DATABASE"]]

    def __call__(self, moment: datetime, org: str, items: int) -> dict[str, float]:
        t = time.perf_counter()
        query = {"status": "ACTIVE", "refresh_due_at": {"$lte": moment}}
        due = self.db.tokens.find(query).sort([("refresh_due_at", 1), ("_id", 1)]).limit(100).to_list()
        raw_due = (time.perf_counter() - t) / max(len(due), 1)
        t = time.perf_counter()
        self.db.connectorsConfig.find({"org_id": org}).sort("key", 1).to_list()
        self.db.tokens.find({"org_id": org}, projection={"meta": 1}).to_list()
        return {"raw_due": raw_due, "raw_list": (time.perf_counter() - t) / max(items, 1)}


@contextlib.contextmanager
def serving(data_dir: Path, env: Mapping[str, str]) -> Iterator[tuple[int, int]]:
    """``connector-manager serve`` (the refresher off) on a free port: (port, pid)."""
    port = free_port()
    ready = data_dir / "serve.ready"
    ready.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "entrypoints.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    proc = subprocess.Popen(  # our own CLI, our own arguments
        [*cmd, "--ready-file", str(ready)],
        cwd=ROOT,
        env={**os.environ, **env, "CM_RUN_REFRESHER": "false", "CM_LOG_LEVEL": "warning"},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not start in 120 s")
            time.sleep(0.1)
        yield port, proc.pid
    finally:
        stop(proc, timeout=20)


async def serve_memory(data_dir: Path, env: Mapping[str, str], secret: str, orgs: int, requests: int) -> float:
    """Peak resident memory (MiB) of ``serve`` after ``requests`` list requests."""
    from entrypoints.http.auth import issue_user_token

    rng = random.Random(5)
    with serving(data_dir, env) as (port, pid):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            for _ in range(requests):
                org = org_name(rng.randrange(1, orgs))
                token = issue_user_token(
                    secret, user_id="u", org_id=org, email="u@x.example", admin=True, ttl=600, now=int(time.time())
                )
                r = await client.get("/api/v1/connectors/", headers={"Authorization": f"Bearer {token}"})
                r.raise_for_status()
        return _peak_mib(pid)


def _peak_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    peak = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(peak.split()[1]) / 1024


@contextlib.contextmanager
def mongo_server(storage: str, url: str | None, root: Path) -> Iterator[str | None]:
    """For MongoDB: ``url``, or SecantusDB started on disk under ``root`` (stopped on the way out)."""
    if storage != "mongo" or url:
        yield url
        return
    from tests.servers import mongo

    server = mongo(on_disk=True, cache_size="1G", workdir=root / "mongo")
    server.start()
    try:
        yield f"mongodb://127.0.0.1:{server.port}/?directConnection=true"
    finally:
        server.stop()


async def seeded(
    data_dir: Path, storage: str, url: str | None, orgs: int, due_share: float
) -> tuple[dict[str, str], str, int, float]:
    """Seed, or find the store an earlier run seeded the same way in ``data_dir``: (settings
    environment, JWT secret, records, seconds it took). Each seeding gets a database of its own."""
    marker = data_dir / "seeded.json"
    if marker.exists():
        done = json.loads(marker.read_text())
        if done["orgs"] == orgs and done["storage"] == storage:
            env = settings_env(storage, url, done["database"])
            return env, done["secret"], done["records"], done["seconds"]
    database = f"scale_{uuid.uuid4().hex[:8]}"
    env = settings_env(storage, url, database)
    t = time.perf_counter()
    secret, records = await seed(data_dir, env, orgs, due_share)
    seconds = time.perf_counter() - t
    done = {"orgs": orgs, "storage": storage, "database": database, "secret": secret}
    marker.write_text(json.dumps(done | {"records": records, "seconds": seconds}))
    return env, secret, records, seconds


async def run(
    storage: str, records: int, mongo_url: str | None, root: Path, *, smoke: bool = False, seed_only: bool = False
) -> list[Row]:
    from connector_core.catalog import load_default_catalog

    per_org = len(load_default_catalog())
    orgs = -(-records // per_org)
    rounds, per_round, requests = (1, 2, 5) if smoke else (3, 5, 200)
    small, large = root / "small", root / "large"
    with mongo_server(storage, mongo_url, root) as url:
        small_env, small_secret, small_n, _ = await seeded(small, storage, url, SMALL_ORGS, 1.0)
        large_env, large_secret, n, seconds = await seeded(large, storage, url, orgs, 0.01)
        print(f"{storage}: {n:,} token records of {orgs:,} orgs seeded in {seconds:.0f} s ({n / seconds:,.0f}/s)")
        if seed_only:
            return []
        pairs = await alternate(
            rounds,
            lambda: _medians(large, large_env, orgs, per_round),
            lambda: _medians(small, small_env, SMALL_ORGS, per_round),
        )
        us = [({k: v * 1e6 for k, v in a.items()}, {k: v * 1e6 for k, v in b.items()}) for a, b in pairs]
        per_record, per_item = f"{small_n} records", f"{SMALL_ORGS} orgs"
        rows = [
            from_pairs(
                f"due-token query, per record ({n:,} records, {storage})", per_record, "µs", us, "due", "<= 1.5"
            ),
            from_pairs(
                f"one org's connector list, per item ({orgs:,} orgs, {storage})", per_item, "µs", us, "list", "<= 1.5"
            ),
        ]
        if storage == "mongo":
            rows += [
                from_pairs(
                    f"due-token query, a process's first pass, per record ({n:,} records)",
                    per_record,
                    "µs",
                    us,
                    "due_first",
                ),
                from_pairs(
                    f"raw pymongo: the due records' find, per record ({n:,} records)", per_record, "µs", us, "raw_due"
                ),
                from_pairs(
                    f"raw pymongo: an org's two finds, per list item ({orgs:,} orgs)", per_item, "µs", us, "raw_list"
                ),
            ]
        print(format_rows(rows))
        big = await serve_memory(large, large_env, large_secret, orgs, requests)
        little = await serve_memory(small, small_env, small_secret, SMALL_ORGS, requests)
        print(
            f"serve peak memory (VmHWM) after {requests} list requests: {big:.0f} MiB ({n:,} records),"
            f" {little:.0f} MiB ({small_n} records)"
        )
        return rows


async def _medians(data_dir: Path, env: Mapping[str, str], orgs: int, per_round: int) -> dict[str, float]:
    got = await per_item(data_dir, env, orgs, per_round)
    return {k: statistics.median(v) for k, v in got.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--storage", choices=["sqlite", "mongo"], default="sqlite")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--mongo-url", help="a MongoDB replica set to use (default: start SecantusDB)")
    parser.add_argument("--keep", type=Path, help="seed into this directory and keep it (and reuse it)")
    parser.add_argument("--smoke", action="store_true", help="one round, a few requests: checks it runs")
    parser.add_argument("--seed-only", action="store_true", help="seed (with --keep: for later runs) and stop")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cm-scale-") as tmp:
        root: Path = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        asyncio.run(run(args.storage, args.records, args.mongo_url, root, smoke=args.smoke, seed_only=args.seed_only))


if __name__ == "__main__":
    main()
