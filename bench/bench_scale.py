"""Scale of the embedded default: 1,000,000 token records of 100,000 orgs in SQLite, seeded in
bulk, against 100 records of 10 orgs; not part of ``./scripts/bench`` (minutes, gigabytes):

    .venv/bin/python -m bench.bench_scale [--orgs 100000] [--per-org 10] [--keep DIR]

Reports, for both sizes: the due-token query (100 records, 1 % of the large store due) and one
org's connector list, as time per item returned (median of alternated rounds), and the peak
memory (VmHWM) of a ``serve``-like process that answered 200 list requests for random orgs.

Seeding: one org's ten token records are made through the product (``TokenRecord.create``, one
unit of work); every other org's are copies of them written with ``executemany`` in large
transactions, each with its own id and its token material sealed again for that id (the
associated data binds it to the record), so every record is as readable as a real one.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from adapters.sealing import token_path
from bench.harness import Row, alternate, format_rows
from bench.processes import served
from bench.serve_app import BENCH_ENV

TEMPLATE_ORG = "tmpl-org-000000"


async def _container(data_dir: Path) -> Any:
    from entrypoints.bootstrap import build_container
    from entrypoints.settings import load_settings

    return await build_container(load_settings(env=BENCH_ENV, data_dir=data_dir), env=BENCH_ENV)


async def seed(data_dir: Path, orgs: int, per_org: int, due_share: float) -> str:
    """The store with ``orgs`` times ``per_org`` token records; the JWT secret of its service."""
    from connector_core.tokens import TokenRecord, TokenSet

    c = await _container(data_dir)
    try:
        ctx = c.ctx
        keys = [e.key for e in c.catalog][:per_org]
        now = ctx.clock.now()
        async with ctx.uow() as uow:
            for key in keys:
                tokens = TokenSet(
                    access_token=f"access-{uuid.uuid4().hex}",
                    obtained_at=now,
                    refresh_token=f"refresh-{uuid.uuid4().hex}",
                    expires_at=now + timedelta(hours=1),
                    scopes=frozenset({"offline_access"}),
                )
                record = TokenRecord.create(
                    token_id=ctx.ids.new_id(),
                    org_id=TEMPLATE_ORG,
                    connector_key=key,
                    account_id="seeder",
                    service_type="BENCH",
                    tokens=tokens,
                    lifecycle=ctx.lifecycle,
                    now=now,
                    ids=ctx.ids,
                )
                await uow.tokens.add(record)
            await uow.commit()
        sealer = c.infrastructure.aead
        secret: str = c.service_secrets.jwt_secret
    finally:
        await c.aclose()
    db = sqlite3.connect(data_dir / "connector-manager.db", isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        columns = [r[1] for r in db.execute("PRAGMA table_info(tokens)")]
        template = [dict(zip(columns, row, strict=True)) for row in db.execute("SELECT * FROM tokens")]
        plain = {t["id"]: sealer.open(t["material"], path=token_path(t["id"])) for t in template}
        names = ", ".join(columns)
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO tokens ({names}) VALUES ({marks})"
        rng = random.Random(7)
        base = time.time()
        batch: list[tuple[Any, ...]] = []
        for i in range(1, orgs):
            org = f"org-{i:06d}"
            for t in template:
                new_id = uuid.uuid4().hex
                row = dict(t)
                row["id"], row["org_id"] = new_id, org
                row["meta"] = t["meta"].replace(TEMPLATE_ORG, org).replace(t["id"], new_id)
                row["material"] = sealer.seal(plain[t["id"]], path=token_path(new_id))
                due = rng.random() < due_share
                row["refresh_due_at"] = base - rng.random() * 3600 if due else base + 600 + rng.random() * 86_400
                batch.append(tuple(row[c] for c in columns))
            if len(batch) >= 50_000:
                db.execute("BEGIN")
                db.executemany(sql, batch)
                db.execute("COMMIT")
                batch.clear()
        db.execute("BEGIN")
        db.executemany(sql, batch)
        db.execute("UPDATE tokens SET refresh_due_at=? WHERE org_id=?", (base - 60, TEMPLATE_ORG))
        db.execute("COMMIT")
    finally:
        db.close()
    return secret


async def per_item(data_dir: Path, orgs: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per item of the due-token query and of one org's list, ``rounds`` times each."""
    c = await _container(data_dir)
    rng = random.Random(11)
    out: dict[str, list[float]] = {"due": [], "list": []}
    try:
        for _ in range(rounds):
            t = time.perf_counter()
            async with c.ctx.uow() as uow:
                due = await uow.tokens.due_before(c.ctx.clock.now(), 100)
            out["due"].append((time.perf_counter() - t) / max(len(due), 1))
            org = f"org-{rng.randrange(1, orgs):06d}" if orgs > 1 else TEMPLATE_ORG
            t = time.perf_counter()
            views = await c.connectors.list(org)
            out["list"].append((time.perf_counter() - t) / max(len(views), 1))
    finally:
        await c.aclose()
    return out


async def serve_memory(data_dir: Path, secret: str, orgs: int) -> float:
    """Peak resident memory (MiB) of a serving process after 200 list requests."""
    from entrypoints.http.auth import issue_user_token

    rng = random.Random(5)
    with served(["ours", "--data-dir", str(data_dir)]) as port:
        pid = _pid_on(port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for _ in range(200):
                org = f"org-{rng.randrange(1, orgs):06d}" if orgs > 1 else TEMPLATE_ORG
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


def _pid_on(port: int) -> int:
    """The process listening on ``port`` (Linux: /proc/net/tcp and the processes' sockets)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            inode = fields[9]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                for fd in (proc / "fd").iterdir():
                    if fd.readlink().name == f"socket:[{inode}]":
                        return int(proc.name)
            except OSError:
                continue
    raise RuntimeError(f"no process listens on {port}")


async def main(orgs: int, per_org: int, keep: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="cm-scale-") as tmp:
        root = keep or Path(tmp)
        small, large = root / "small", root / "large"
        t = time.perf_counter()
        small_secret = await seed(small, 10, per_org, 1.0)
        large_secret = await seed(large, orgs, per_org, 0.01)
        seeded = time.perf_counter() - t
        n = orgs * per_org
        size = (large / "connector-manager.db").stat().st_size / 2**20
        print(f"seeded {n:,} + {10 * per_org} records in {seeded:.0f} s ({n / seeded:,.0f}/s); file {size:,.0f} MiB")
        figures: dict[str, tuple[list[float], list[float]]] = {"due": ([], []), "list": ([], [])}

        async def on(which: Path, count: int, slot: int) -> dict[str, float]:
            got = await per_item(which, count, 5)
            for k, v in got.items():
                figures[k][slot].extend(v)
            return {k: statistics.median(v) for k, v in got.items()}

        pairs = await alternate(3, lambda: on(large, orgs, 0), lambda: on(small, 10, 1))
        rows = [
            Row(
                f"due-token query, per record ({n:,} records)",
                f"{10 * per_org} records",
                "µs",
                tuple(a["due"] * 1e6 for a, _ in pairs),
                tuple(b["due"] * 1e6 for _, b in pairs),
                "<= 1.5",
            ),
            Row(
                f"one org's connector list, per item ({orgs:,} orgs)",
                "10 orgs",
                "µs",
                tuple(a["list"] * 1e6 for a, _ in pairs),
                tuple(b["list"] * 1e6 for _, b in pairs),
                "<= 1.5",
            ),
        ]
        print(format_rows(rows))
        big, little = await serve_memory(large, large_secret, orgs), await serve_memory(small, small_secret, 10)
        print(f"serve peak memory after 200 list requests: {big:.0f} MiB ({n:,} records), {little:.0f} MiB (100)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orgs", type=int, default=100_000)
    parser.add_argument("--per-org", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="seed into this directory and keep it")
    args = parser.parse_args()
    asyncio.run(main(args.orgs, args.per_org, args.keep))
