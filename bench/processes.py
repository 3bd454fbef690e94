"""Benchmark servers as child processes: started on a free port, stopped on the way out."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def served(args: Sequence[str], *, timeout: float = 30.0) -> Iterator[int]:
    """Run ``python -m bench.serve_app <args> --port P``; yields P once it accepts connections."""
    port = free_port()
    proc = subprocess.Popen(  # our own module, our own arguments
        [sys.executable, "-m", "bench.serve_app", *args, "--port", str(port)],
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not _port_open(port):
            if proc.poll() is not None:
                raise RuntimeError(f"bench server {args[0]} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"bench server {args[0]} did not start in {timeout:g} s")
            time.sleep(0.05)
        yield port
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """End a process started in a session of its own (and what it started): SIGTERM, then
    SIGKILL after ``timeout`` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def load(url: str, headers: Sequence[str], *, concurrency: int, duration: float, warmup: float) -> dict[str, float]:
    """One run of :mod:`bench.http_load` in its own process; its figures."""
    cmd = [sys.executable, "-m", "bench.http_load", url, "--concurrency", str(concurrency)]
    cmd += ["--duration", str(duration), "--warmup", str(warmup)]
    for h in headers:
        cmd += ["--header", h]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True, timeout=duration + 60)
    figures: dict[str, float] = json.loads(out.stdout)
    if figures["errors"] or not figures["requests"]:
        raise RuntimeError(f"load run against {url} failed: {figures}")
    return figures
