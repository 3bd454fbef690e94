"""A bounded schemathesis run over every route of a real server, every check on (the large run
is ``scripts/fuzz-api admin -n 600``; see docs/operations.md). Deterministic: the same cases
every time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_requests_find_no_failure() -> None:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "ST": str(Path(sys.executable).parent / "st"),
    }
    run = subprocess.run(
        ["bash", "scripts/fuzz-api", "admin", "-n", "6", "--generation-deterministic", "--phases", "fuzzing"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    found = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert found is not None, run.stdout[-2000:]
    generated, passed = map(int, found.groups())
    assert generated >= 300 and passed == generated, found.group(0)
