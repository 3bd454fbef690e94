"""Running ``connector-manager`` as the operator does: a separate process, in the repository,
with an environment that carries no ``CM_*`` setting of the machine running the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without its ``CM_*`` variables, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
    return {**env, **settings}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "entrypoints.cli", *args]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run to the end; the exit code is the caller's to judge."""
    return subprocess.run(
        command(*args),
        cwd=ROOT,
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_cli(*args: str, env: dict[str, str], merge_stderr: bool = False) -> subprocess.Popen[str]:
    """Start in the background; stdout and stderr are pipes (stderr into stdout when merged).
    Ctrl-C (SIGINT) works as on a terminal, even when the suite itself runs with SIGINT ignored
    (a background job of a shell without job control: children inherit the ignoring)."""
    return subprocess.Popen(
        command(*args),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,
    )


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
