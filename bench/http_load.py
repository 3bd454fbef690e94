"""A small HTTP/1.1 load generator, run as its own process so it does not share a core's
event loop with the server it measures:

    python -m bench.http_load http://127.0.0.1:PORT/path --header 'Authorization: Bearer …' \
        --concurrency 16 --duration 2

``concurrency`` keep-alive connections each send one GET, read the whole answer (by its
``Content-Length``) and send the next, for ``duration`` seconds after ``warmup`` seconds not
counted. Prints one JSON line: requests, errors (non-200), rps, p50_ms, p99_ms.

Limits: one Python process on one core, parsing only what it needs (status and
Content-Length); on this machine it generates well over 10,000 requests/s against a server
that answers at once, several times what the servers measured here reach, so it is not the
bottleneck. It is the same for ours and the baseline, which is what the ratio needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from urllib.parse import urlsplit


async def _connection(
    host: str, port: int, request: bytes, start: float, stop: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            t = time.perf_counter()
            if t >= stop:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            at = lower.find(b"content-length:")
            length = int(lower[at + 15 : lower.find(b"\r\n", at)]) if at >= 0 else 0
            if length:
                await reader.readexactly(length)
            done = time.perf_counter()
            if done >= start:  # warm-up requests are not counted
                latencies.append(done - t)
                if head[9:12] != b"200":
                    errors.append(1)
    finally:
        writer.close()


async def run(url: str, headers: list[str], concurrency: int, duration: float, warmup: float) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"GET {parts.path or '/'} HTTP/1.1", f"Host: {host}:{port}", *headers, "", ""]
    request = "\r\n".join(lines).encode()
    start = time.perf_counter() + warmup
    stop = start + duration
    latencies: list[float] = []
    errors: list[int] = []
    await asyncio.gather(
        *(_connection(host, port, request, start, stop, latencies, errors) for _ in range(concurrency))
    )
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "errors": len(errors),
        "rps": n / duration,
        "p50_ms": statistics.median(latencies) * 1000 if n else float("nan"),
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.header, args.concurrency, args.duration, args.warmup))))


if __name__ == "__main__":
    main()
