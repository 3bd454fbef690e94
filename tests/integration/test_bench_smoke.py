"""The benchmark suite still runs: ``./scripts/bench --smoke`` (a few iterations of each
benchmark against its baseline) completes and its table has every row with a numeric ratio; so
does the scale benchmark (``bench.bench_scale --smoke``) on a tiny store, on SQLite and MongoDB.
No figure is judged here: timing on a shared machine is not a test."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def smoke(out: Path, only: str) -> dict[str, float]:
    """Run the smoke benchmarks named in ``only``; each table row's ratio by benchmark name."""
    cmd = [sys.executable, "-m", "bench", "--smoke", "--out", str(out), "--only", only, "--stacks", "asyncio+h11"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert run.returncode == 0, run.stderr[-3000:]
    ratios = {}
    for line in out.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] != "benchmark":
            ratios[cells[0]] = float(cells[3])
    return ratios


def test_hot_path_secret_and_refresh_benchmarks_run_against_their_baselines(tmp_path: Path) -> None:
    ratios = smoke(tmp_path / "results.md", "hot,secret,refresh")
    assert sorted(ratios) == sorted(
        [
            "GET /active",
            "p99 latency of GET /active",
            "GET /config/{name}",
            "secret read (EncryptedKeyValueStore over the memory kv)",
            "secret read, cold (each value read once)",
            "bulk refresh, concurrency 8",
            "bulk refresh, concurrency 32",
        ]
    )
    assert all(math.isfinite(r) and r > 0 for r in ratios.values()), ratios


@pytest.mark.kafka
def test_outbox_relay_benchmark_runs_against_the_raw_producer(tmp_path: Path) -> None:
    ratios = smoke(tmp_path / "results.md", "relay")
    assert list(ratios) == ["outbox relay to Kafka (SQLite outbox)"]
    assert all(math.isfinite(r) and r > 0 for r in ratios.values()), ratios


def scale_smoke(tmp_path: Path, *args: str) -> dict[str, float]:
    """``bench.bench_scale --smoke`` on a tiny store; each table row's ratio by benchmark name."""
    cmd = [sys.executable, "-m", "bench.bench_scale", "--smoke", "--records", "120", "--keep", str(tmp_path), *args]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "serve peak memory" in run.stdout, run.stdout[-3000:]
    rows = [
        [c.strip() for c in line.strip("|").split("|")] for line in run.stdout.splitlines() if line.startswith("| ")
    ]
    return {cells[0]: float(cells[3]) for cells in rows if cells[0] != "benchmark"}


def test_scale_benchmark_runs_on_the_embedded_default(tmp_path: Path) -> None:
    ratios = scale_smoke(tmp_path, "--storage", "sqlite")
    assert len(ratios) == 2 and all(math.isfinite(r) and r > 0 for r in ratios.values()), ratios


@pytest.mark.mongo
def test_scale_benchmark_runs_on_mongodb_with_its_raw_pymongo_rows(tmp_path: Path, mongo_url: str) -> None:
    ratios = scale_smoke(tmp_path, "--storage", "mongo", "--mongo-url", mongo_url)
    assert len(ratios) == 5 and all(math.isfinite(r) and r > 0 for r in ratios.values()), ratios
    assert sum(name.startswith("raw pymongo") for name in ratios) == 2, ratios
    assert sum("first pass" in name for name in ratios) == 1, ratios
