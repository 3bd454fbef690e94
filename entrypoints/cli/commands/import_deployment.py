"""``connector-manager import``: take over an existing deployment (the Node.js service's etcd and
MongoDB): its connectors, client configurations, credentials and enabled state, and its API
signing secrets. Prints a progress bar (stderr) and a summary (stdout); exits 1 when an item
failed, 0 otherwise. The source is only read; running it again changes nothing."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, TextIO

from connector_core.services.importing import ImportOutcome, ImportResult
from entrypoints.cli.options import add_settings_options, nonblank
from entrypoints.settings import Settings

_WIDTH = 30


def register(commands: argparse._SubParsersAction[Any]) -> None:
    p = commands.add_parser(
        "import",
        help="import an existing deployment (its etcd and MongoDB); the source is never changed",
        description="Import the existing Node.js deployment's connectors, client configurations, "
        "individual and business credentials, enabled state and signing secrets. Its SECRET_KEY "
        "comes from CM_LEGACY_SECRET_KEY; its etcd user and password, if any, from "
        "CM_IMPORT_ETCD_USER and CM_IMPORT_ETCD_PASSWORD.",
    )
    add_settings_options(p)
    p.add_argument("--dry-run", action="store_true", help="report what would be imported; write nothing")
    p.add_argument("--from-etcd", type=nonblank, metavar="HOST:PORT", help="its etcd (default: etcd_endpoint)")
    p.add_argument("--from-etcd-namespace", default="", metavar="PREFIX", help="a prefix before its keys")
    p.add_argument(
        "--from-mongo-url", type=nonblank, metavar="URL", help="its MongoDB (default: iam_mongo_url, else mongo_url)"
    )
    p.add_argument(
        "--from-mongo-database", type=nonblank, metavar="NAME", help="its database (default: iam_mongo_database, es)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from entrypoints.importer import run_import, source_settings

    source = source_settings(
        settings,
        os.environ,
        etcd_endpoint=args.from_etcd,
        etcd_namespace=args.from_etcd_namespace,
        mongo_url=args.from_mongo_url,
        mongo_database=args.from_mongo_database,
    )
    bar = ProgressBar(sys.stderr)
    done = asyncio.run(run_import(settings, os.environ, source, dry_run=args.dry_run, progress=bar))
    bar.finish()
    print_summary(done.report.results, dry_run=args.dry_run, frontend_url=done.frontend_url_hint)
    return 1 if done.report.failed else 0


class ProgressBar:
    """``[#####-----] 5/10 imported googleWorkspace of org …`` on one line of a terminal, one
    line per item elsewhere (logs, CI)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()

    def __call__(self, done: int, total: int, result: ImportResult) -> None:
        filled = _WIDTH * done // max(total, 1)
        line = f"[{'#' * filled}{'-' * (_WIDTH - filled)}] {done}/{total} {result.outcome}: {result.item}"
        if self.live:
            self.out.write("\r\x1b[2K" + line[:160])
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.live:
            self.out.write("\n")
            self.out.flush()


def print_summary(results: tuple[ImportResult, ...], *, dry_run: bool, frontend_url: str | None) -> None:
    done = ImportOutcome.WOULD_IMPORT if dry_run else ImportOutcome.IMPORTED
    order = (done, ImportOutcome.SKIPPED, ImportOutcome.FAILED)
    if dry_run:
        print("Dry run: nothing was written.")
    for outcome in order:
        chosen = [r for r in results if r.outcome == outcome]
        if not chosen:
            continue
        print(f"{outcome.capitalize()} ({len(chosen)}):")
        for r in chosen:
            print(f"  {r.item}" + (f": {r.reason}" if r.reason else ""))
            for note in r.notes:
                print(f"    note: {note}")
    counts = ", ".join(f"{sum(r.outcome == o for r in results)} {o}" for o in order)
    print(f"Summary: {counts}.")
    if frontend_url:
        print(f'Hint: the existing deployment\'s front end is {frontend_url}: set frontend_url = "{frontend_url}".')
