"""``serve`` and ``worker`` given something they cannot use (a ready file's directory, a data dir,
a port): refused in one line on stderr that names the path or the port and says why, with the
documented exit code, never a traceback, and nothing left created or running."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cli import run_cli
from tests.servers import free_port, port_open


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The error: one line on stderr, nothing on stdout, no traceback."""
    err = done.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert done.stdout == "", done.stdout
    return err


def test_serve_refuses_a_ready_file_in_a_directory_that_does_not_exist_before_it_starts(tmp_path: Path) -> None:
    # seen: the API started, then writing the file failed with a traceback and exit 1
    data, ready, port = tmp_path / "data", tmp_path / "no-such-dir" / "ready", free_port()
    done = run_cli("serve", "--data-dir", str(data), "--port", str(port), "--ready-file", str(ready))
    err = one_line(done)
    assert done.returncode == 2, err
    assert err.startswith("connector-manager: --ready-file: ") and f"{ready.parent} does not exist" in err
    assert not data.exists()  # refused before the first start made a deployment
    assert not ready.parent.exists() and not port_open(port)
