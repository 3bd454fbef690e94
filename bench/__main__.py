"""Every benchmark, each against its raw baseline, and the table of ratios:

    ./scripts/bench [--smoke] [--out bench/results.md] [--only hot,secret,refresh,relay]
                    [--stacks asyncio+h11,uvloop+httptools]

``--smoke`` runs each benchmark for a handful of iterations (the test suite does, to keep them
working; its figures mean nothing). Prints the table and writes it to ``--out``. A benchmark
that cannot run here (no broker binary for the relay) is left out of a full run with a
message saying why; in a smoke run that is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from pathlib import Path

from bench import bench_hot_path, bench_refresh, bench_relay, bench_relay_lag, bench_secret_read
from bench.harness import Row, write_report

NAMES = ("hot", "secret", "refresh", "relay")


def _stacks(text: str) -> list[tuple[str, str]]:
    stacks = []
    for item in text.split(","):
        loop, _, http = item.partition("+")
        stacks.append((loop, http or "h11"))
    return stacks


async def main(args: argparse.Namespace) -> int:
    only = set(args.only.split(",")) if args.only else set(NAMES)
    rows: list[Row] = []
    notes: list[str] = []
    if "hot" in only:
        for loop, http in _stacks(args.stacks):
            missing = [m for m in {loop, http} - {"asyncio", "h11"} if importlib.util.find_spec(m) is None]
            if missing:
                notes.append(f"hot reads on {loop}+{http} not measured: {', '.join(missing)} not installed")
                continue
            rows += await bench_hot_path.run(smoke=args.smoke, loop=loop, http=http)
    if "secret" in only:
        rows += await bench_secret_read.run(smoke=args.smoke)
    if "refresh" in only:
        rows += await bench_refresh.run(smoke=args.smoke)
    if "relay" in only:
        try:
            rows += await bench_relay.run(smoke=args.smoke)
            notes += await bench_relay_lag.run(smoke=args.smoke)
        except bench_relay.Skipped as exc:
            if args.smoke:
                raise
            print(f"outbox relay benchmark skipped: {exc}", file=sys.stderr)
            notes.append(f"outbox relay not measured: {exc}")
    print(write_report(Path(args.out), rows, notes, smoke=args.smoke))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few iterations each: checks they run")
    parser.add_argument("--out", default="bench/results.md", help="where the Markdown table goes")
    parser.add_argument("--only", default="", help=f"a comma-separated subset of {', '.join(NAMES)}")
    parser.add_argument(
        "--stacks", default="asyncio+h11,uvloop+httptools", help="event loop + HTTP parser pairs for the hot reads"
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
