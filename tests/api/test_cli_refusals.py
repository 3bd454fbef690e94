"""``serve``, ``worker`` and the commands that work on an existing deployment, given something
they cannot use (a ready file's directory, a data dir, a port): refused in one line on stderr
that names the path or the port and says why, with the documented exit code, never a traceback,
and nothing left created or running."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.cli import ROOT, clean_env, command, run_cli
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


# -- what serve and worker cannot use: the path or the port, and the OS's reason (exit 1) ---------


def initialised(path: Path) -> Path:
    done = run_cli("token", "--init", "--scoped", "--data-dir", str(path))
    assert done.returncode == 0, done.stderr
    return path


def run_unprivileged(*args: str) -> subprocess.CompletedProcess[str]:
    """:func:`run_cli` as a process that file permissions apply to: as root, in a user namespace
    of its own (``unshare --user``), which root's power over files does not reach."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        unshare = shutil.which("unshare")
        if unshare is None or subprocess.run([unshare, "--user", "true"], check=False).returncode != 0:
            pytest.skip("runs as root, with no user namespace to drop its power over files in")
        prefix = [unshare, "--user"]
    return subprocess.run(
        [*prefix, *command(*args)], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60, check=False
    )


def test_serve_names_a_data_dir_it_cannot_create_or_that_is_a_file(tmp_path: Path) -> None:
    # seen: "could not start (NotADirectoryError)" and "(FileExistsError)", saying neither what nor where
    a_file = tmp_path / "file"
    a_file.write_text("", encoding="utf-8")
    for data, said in (
        (a_file / "data", f"cannot create the data dir {a_file / 'data'} (Not a directory): "),
        (a_file, f"the data dir {a_file} is not a directory: "),
    ):
        done = run_cli("serve", "--data-dir", str(data), "--port", str(free_port()))
        err = one_line(done)
        assert done.returncode == 1, err
        assert err.startswith(f"connector-manager: could not start: {said}") and "--data-dir" in err, err
    assert a_file.read_text(encoding="utf-8") == ""


@pytest.mark.parametrize("process", ["serve", "worker"])
def test_a_data_dir_that_cannot_be_written_or_read_is_named_with_the_reason(tmp_path: Path, process: str) -> None:
    # seen: "could not start (PermissionError)"
    data = initialised(tmp_path / "data")
    args = ("serve", "--port", str(free_port())) if process == "serve" else ("worker", "--once")
    before = sorted(p.name for p in data.iterdir())
    data.chmod(0o500)
    try:
        done = run_unprivileged(*args, "--data-dir", str(data))
    finally:
        data.chmod(0o700)
    err = one_line(done)
    assert done.returncode == 1, err
    said = f"cannot write in the data dir {data} (Permission denied): "
    assert err.startswith(f"connector-manager: could not start: {said}") and "--data-dir" in err, err
    (data / "master.key").chmod(0o000)
    done = run_unprivileged(*args, "--data-dir", str(data))
    err = one_line(done)
    assert done.returncode == 1, err
    said = f"cannot read {data / 'master.key'} (Permission denied): "
    assert err.startswith(f"connector-manager: could not start: {said}"), err
    assert sorted(p.name for p in data.iterdir()) == before


def test_serve_names_a_new_data_dir_it_cannot_write_in(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir(mode=0o500)
    done = run_unprivileged("serve", "--port", str(free_port()), "--data-dir", str(fresh))
    err = one_line(done)
    assert done.returncode == 1, err
    assert err.startswith(
        f"connector-manager: could not start: cannot write in the data dir {fresh} (Permission denied)"
    )
    assert list(fresh.iterdir()) == []


def test_any_other_file_the_system_refuses_is_named_with_the_reason(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "master.key").mkdir(mode=0o700, parents=True)
    done = run_cli("serve", "--port", str(free_port()), "--data-dir", str(data))
    err = one_line(done)
    assert done.returncode == 1, err
    assert f"could not start (IsADirectoryError: Is a directory: {data / 'master.key'})" in err, err


def test_a_worker_names_a_metrics_port_in_use(tmp_path: Path) -> None:
    # seen: "could not start (OSError)"
    data = initialised(tmp_path / "data")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_cli("worker", "--data-dir", str(data), "--metrics-port", str(port), timeout=60)
    err = done.stderr.strip().splitlines()[-1]  # after the start-up banner
    assert done.returncode == 1, done.stderr
    assert err.startswith(f"connector-manager: could not start: cannot serve metrics on 127.0.0.1:{port} (")
    assert "in use" in err and "--metrics-port" in err and "CM_METRICS_PORT" in err
    assert "Traceback" not in done.stderr
