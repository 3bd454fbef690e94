"""``serve`` and ``worker`` given something they cannot use (a ready file's directory, a data dir,
a port): refused in one line on stderr that names the path or the port and says why, with the
documented exit code, never a traceback, and nothing left created or running."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli import clean_env, run_cli
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


# -- commands that work on an existing deployment ------------------------------------------------


@pytest.mark.parametrize("args", [("worker", "--once"), ("worker", "--once", "--json"), ("worker",)])
def test_worker_refuses_a_data_dir_that_does_not_exist_and_creates_nothing(tmp_path: Path, args: tuple[str]) -> None:
    # seen: `worker --once` on a mistyped data dir made a new deployment there and worked on nothing
    typo = tmp_path / "dta"
    done = run_cli(*args, "--data-dir", str(typo), timeout=30)
    err = one_line(done)
    assert done.returncode == 2, err
    assert err.startswith(f"connector-manager: data_dir: {typo} does not exist"), err
    assert "--data-dir" in err and "`connector-manager serve --data-dir DIR` creates" in err
    assert "--init" not in err  # the worker has no --init
    assert not typo.exists()


def test_worker_once_refuses_a_data_dir_that_holds_no_deployment_and_writes_nothing_there(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for env, missing in ((clean_env(), "master.key"), (clean_env(CM_MASTER_KEY="k" * 32), "connector-manager.db")):
        done = run_cli("worker", "--once", "--data-dir", str(empty), env=env)
        err = one_line(done)
        assert done.returncode == 2, err
        assert f"{empty} was never initialised ({missing} is missing)" in err and "serve" in err
        assert list(empty.iterdir()) == []


def test_the_commands_without_init_do_not_offer_it(tmp_path: Path) -> None:
    typo = tmp_path / "dta"
    for args in (("connectors", "list", "--org", "acme"), ("keys", "status"), ("admin-url", "--org", "acme")):
        done = run_cli(*args, "--data-dir", str(typo))
        err = one_line(done)
        assert done.returncode == 2 and f"{typo} does not exist" in err and "--init" not in err, (args, err)
    done = run_cli("token", "--scoped", "--data-dir", str(typo))
    assert done.returncode == 2 and "pass --init to create it here" in one_line(done)
    assert not typo.exists()
