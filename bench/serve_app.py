"""Serve one benchmark application on uvicorn, as its own process:

    python -m bench.serve_app ours --port P --data-dir D [--loop asyncio|uvloop] [--http h11|httptools]
    python -m bench.serve_app bare --port P --spec FILE     # FILE: {"jwt_secret": …, "documents": {path: doc}}
    python -m bench.serve_app token --port P --latency 0.02

Every application runs with the same uvicorn settings (one process, no access log), so the
stack under ours and under the baseline is the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import uvicorn

from bench.baseline_apps import bare_app, token_endpoint

BENCH_ENV = {"CM_MASTER_KEY": "bench-master-key"}


async def _ours(data_dir: Path) -> Any:
    from entrypoints.bootstrap import build_container
    from entrypoints.http.app import create_app
    from entrypoints.settings import load_settings

    container = await build_container(load_settings(env=BENCH_ENV, data_dir=data_dir), env=BENCH_ENV)
    return create_app(container, close_on_shutdown=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app", choices=["ours", "bare", "token"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--spec", type=Path)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--loop", default="asyncio")
    parser.add_argument("--http", default="h11")
    args = parser.parse_args()

    async def serve() -> None:
        if args.app == "ours":
            app = await _ours(args.data_dir)
        elif args.app == "bare":
            spec = json.loads(args.spec.read_text())
            app = bare_app(spec["jwt_secret"], spec["documents"])
        else:
            app = token_endpoint(args.latency)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, http=args.http
        )
        await uvicorn.Server(config).serve()

    if args.loop == "uvloop":
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        uvloop.run(serve())
    else:
        asyncio.run(serve())


if __name__ == "__main__":
    main()
