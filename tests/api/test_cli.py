"""``connector-manager`` as an operator uses it: help, version, tokens, the management commands
(connectors, events, health), worker --once, serve on a busy port, wait."""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoints.cli import parser
from tests.cli import clean_env, run_cli, start_cli
from tests.servers import free_port

CONFLUENCE = {
    "baseUrl": "https://acme.atlassian.net",
    "auth": {"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": "PLANTED-CLI-TOKEN"},
}


def parsers(
    root: argparse.ArgumentParser, path: str = "connector-manager"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, root
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{path} {name}")


# -- help and version ---------------------------------------------------------------------------


def test_every_option_of_every_command_has_help_and_no_markup() -> None:
    found = list(parsers(parser()))
    names = {path for path, _ in found}
    for command in ("serve", "worker", "token", "wait", "health"):
        assert f"connector-manager {command}" in names
    for command in ("connectors list", "connectors show", "connectors configure", "connectors enable",
                    "connectors disable", "events tail"):  # fmt: skip
        assert f"connector-manager {command}" in names
    for path, p in found:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(c.help for c in action._choices_actions), path
                continue
            assert action.help and action.help != argparse.SUPPRESS, (path, action.option_strings or action.dest)
        text = p.format_help()
        for markup in ("``", ":class:", ":meth:", "[bold", "[/", "%("):
            assert markup not in text, (path, markup)


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("connector-manager 0.")


# -- token ---------------------------------------------------------------------------------------


def test_token_refuses_a_data_dir_that_was_never_initialised_and_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "dta"
    done = run_cli("token", "--data-dir", str(typo), "--org", "acme", "--user", "u", "--email", "u@acme.example")
    assert done.returncode == 2
    assert "never initialised" in done.stderr and "--init" in done.stderr
    assert done.stdout == ""
    assert not typo.exists()


def test_token_validates_its_arguments_before_touching_disk(tmp_path: Path) -> None:
    new = tmp_path / "new"
    done = run_cli("token", "--data-dir", str(new), "--init", "--org", "acme", "--user", "u")
    assert done.returncode == 2
    assert "--email" in done.stderr
    assert not new.exists()
    done = run_cli("token", "--data-dir", str(new), "--init", "--scoped", "--admin")
    assert done.returncode == 2 and not new.exists()


def test_token_init_creates_the_data_dir_and_the_next_token_needs_no_init(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = run_cli("token", "--data-dir", str(data), "--init", "--scoped")
    assert first.returncode == 0, first.stderr
    assert (data / "master.key").exists() and (data / "connector-manager.db").exists()
    second = run_cli("token", "--data-dir", str(data), "--org", "acme", "--user", "u", "--email", "u@acme.example")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count(".") == 2  # a JWT


def test_a_blank_org_is_refused_not_read_as_every_org(tmp_path: Path) -> None:
    """``--org "$ORG"`` with ORG unset must not print a scoped token for every org (nor write a
    data dir for one): a blank id is refused before anything is read or written."""
    new = tmp_path / "new"
    for org in ("", "  "):
        done = run_cli("token", "--data-dir", str(new), "--init", "--scoped", "--org", org)
        assert done.returncode == 2, done.stderr
        assert "--org" in done.stderr and "must not be empty" in done.stderr
        assert done.stdout == ""
    assert not new.exists()
    for blank in (("--user", ""), ("--email", " ")):
        args = {"--org": "acme", "--user": "u", "--email": "u@acme.example", **dict([blank])}
        done = run_cli("token", "--data-dir", str(new), "--init", *[x for kv in args.items() for x in kv])
        assert done.returncode == 2 and blank[0] in done.stderr and done.stdout == "", done.stderr
    assert not new.exists()


def test_issuing_a_scoped_token_for_a_blank_org_raises() -> None:
    from entrypoints.http.auth import issue_scoped_token, scoped_principal

    for org in ("", " "):
        with pytest.raises(ValueError, match="org_id must not be blank"):
            issue_scoped_token("s" * 32, scopes=["fetch:config"], ttl=60, now=int(time.time()), org_id=org)
    every_org = issue_scoped_token("s" * 32, scopes=["fetch:config"], ttl=60, now=int(time.time()))
    assert scoped_principal(every_org, "s" * 32).org_id is None


# -- the management commands ---------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    done = run_cli("token", "--data-dir", str(data), "--init", "--scoped")
    assert done.returncode == 0, done.stderr
    return data


def cm(data_dir: Path, *args: str) -> tuple[int, str, str]:
    done = run_cli(*args, "--data-dir", str(data_dir))
    return done.returncode, done.stdout, done.stderr


def test_management_commands_on_an_uninitialised_data_dir_are_refused(tmp_path: Path) -> None:
    for args in (("connectors", "list", "--org", "acme"), ("events", "tail"), ("health",)):
        code, _, err = cm(tmp_path / "nothing-here", *args)
        assert code == 2 and "never initialised" in err, args
    assert not (tmp_path / "nothing-here").exists()


def test_every_command_taking_an_org_refuses_a_blank_one(data_dir: Path, tmp_path: Path) -> None:
    body = tmp_path / "confluence.json"
    body.write_text(json.dumps(CONFLUENCE), encoding="utf-8")
    for args in (
        ("connectors", "list", "--org", ""),
        ("connectors", "configure", "confluence", "--org", "", "--file", str(body)),
        ("connectors", "enable", "confluence", "--org", " "),
        ("events", "tail", "--org", ""),
        ("admin-url", "--org", ""),
    ):
        code, out, err = cm(data_dir, *args)
        assert code == 2 and "--org" in err and "must not be empty" in err and out == "", (args, err)
    for option in ("--from-etcd", "--from-mongo-url"):  # a blank source is not "the default one"
        code, out, err = cm(data_dir, "import", "--dry-run", option, "")
        assert code == 2 and option in err and "must not be empty" in err and out == "", err
    # nothing was configured for an org named ""
    code, out, _ = cm(data_dir, "events", "tail", "--json")
    assert code == 0 and out == ""


def test_import_from_etcd_takes_host_and_port_alone_and_never_echoes_credentials(data_dir: Path) -> None:
    # seen: "u:PW@host:2379" was taken as host "u:PW@host", and the password was shown in the
    # start-up log line and in the error naming the server
    env = clean_env() | {"CM_LEGACY_SECRET_KEY": "legacy-secret"}
    for endpoint in ("u:PLANTED-PW@127.0.0.1:2379", "127.0.0.1:99999"):
        done = run_cli("import", "--dry-run", "--from-etcd", endpoint, "--data-dir", str(data_dir), env=env)
        assert done.returncode == 2 and "--from-etcd" in done.stderr and done.stdout == "", done.stderr
        assert "CM_IMPORT_ETCD_USER" in done.stderr and "PLANTED-PW" not in done.stderr


def test_durations_are_finite_seconds_above_zero(data_dir: Path) -> None:
    # seen: --interval nan and --timeout nan waited for ever; a negative interval made a busy loop
    for args in (
        ("events", "tail", "--follow", "--interval", "nan"),
        ("events", "tail", "--follow", "--interval", "-1"),
        ("wait", "--timeout", "nan", "--port", "1"),
        ("wait", "--timeout", "inf", "--port", "1"),
    ):
        done = run_cli(*args, "--data-dir", str(data_dir), timeout=20)
        assert done.returncode == 2 and "finite number of seconds" in done.stderr, (args, done.stderr)


def test_connectors_configure_enable_show_list_disable(data_dir: Path, tmp_path: Path) -> None:
    body = tmp_path / "confluence.json"
    body.write_text(json.dumps(CONFLUENCE), encoding="utf-8")
    code, out, err = cm(data_dir, "connectors", "configure", "confluence", "--org", "acme", "--file", str(body))
    assert code == 0, err
    assert "configuration saved" in out
    code, out, err = cm(data_dir, "connectors", "enable", "confluence", "--org", "acme")
    assert code == 0 and out.strip() == "Confluence: enabled", err

    code, out, _ = cm(data_dir, "connectors", "list", "--org", "acme")  # piped: a header, then tab-separated rows
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows[0][:4] == ["key", "name", "enabled", "configured"]
    assert ["confluence", "Confluence", "yes", "yes", "API_TOKEN", "AUTHENTICATED"] in rows
    code, out, _ = cm(data_dir, "connectors", "list", "--org", "acme", "--json")
    (confluence,) = [c for c in json.loads(out) if c["key"] == "confluence"]
    assert confluence["isEnabled"] is True

    code, out, _ = cm(data_dir, "connectors", "show", "confluence", "--org", "acme", "--json")
    shown = json.loads(out)
    assert shown["config"]["auth"]["hasApiToken"] is True and shown["config"]["auth"]["email"] == "ops@acme.example"
    code, text, _ = cm(data_dir, "connectors", "show", "confluence", "--org", "acme")
    for answer in (out, text):
        assert "PLANTED-CLI-TOKEN" not in answer

    code, out, _ = cm(data_dir, "connectors", "disable", "confluence", "--org", "acme")
    assert code == 0 and out.strip() == "Confluence: disabled"
    code, out, _ = cm(data_dir, "events", "tail", "--org", "acme", "--json")
    types = [json.loads(line)["eventType"] for line in out.splitlines()]
    assert types[-2:] == ["appEnabled", "appDisabled"]


def test_configure_refuses_a_bad_document_with_the_field_and_stores_nothing(data_dir: Path, tmp_path: Path) -> None:
    body = tmp_path / "bad.json"
    body.write_text('{"baseUrl": "https://acme.atlassian.net", "sync": {"batchSize": 1e400}}', encoding="utf-8")
    code, _, err = cm(data_dir, "connectors", "configure", "confluence", "--org", "acme", "--file", str(body))
    assert code == 2 and "sync.batchSize" in err and "out of range" in err
    body.write_text('{"baseUrl": "ftp://nope"}', encoding="utf-8")
    code, _, err = cm(data_dir, "connectors", "configure", "confluence", "--org", "acme", "--file", str(body))
    assert code == 2 and "baseUrl" in err
    code, out, _ = cm(data_dir, "connectors", "show", "confluence", "--org", "acme", "--json")
    assert json.loads(out)["version"] == 0


def test_events_tail_pages_with_after(data_dir: Path, tmp_path: Path) -> None:
    body = tmp_path / "confluence.json"
    body.write_text(json.dumps(CONFLUENCE), encoding="utf-8")
    cm(data_dir, "connectors", "configure", "confluence", "--org", "acme", "--file", str(body))
    for action in ("enable", "disable", "enable"):
        assert cm(data_dir, "connectors", action, "confluence", "--org", "acme")[0] == 0
    _, out, _ = cm(data_dir, "events", "tail", "--json", "--limit", "100")
    everything = [json.loads(line)["eventId"] for line in out.splitlines()]
    _, out, _ = cm(data_dir, "events", "tail", "--json", "--after", everything[1], "--limit", "100")
    assert [json.loads(line)["eventId"] for line in out.splitlines()] == everything[2:]
    _, out, _ = cm(data_dir, "events", "tail", "--after", everything[1])  # one plain line per event
    assert [line.split()[-1] for line in out.splitlines()] == everything[2:]
    code, _, err = cm(data_dir, "events", "tail", "--after", "no-such-event")
    assert code == 2 and "no stored event" in err


def test_events_tail_follow_prints_new_events_as_they_are_stored(data_dir: Path, tmp_path: Path) -> None:
    body = tmp_path / "confluence.json"
    body.write_text(json.dumps(CONFLUENCE), encoding="utf-8")
    cm(data_dir, "connectors", "configure", "confluence", "--org", "acme", "--file", str(body))
    env = clean_env()
    follower = start_cli(
        "events", "tail", "--follow", "--interval", "0.1", "--json", "--data-dir", str(data_dir), env=env
    )
    try:
        assert cm(data_dir, "connectors", "enable", "confluence", "--org", "acme")[0] == 0
        assert follower.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        stdout = follower.stdout

        def read() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while "appEnabled" not in seen and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                seen.append(json.loads(lines.get(timeout=1))["eventType"])
        assert "appEnabled" in seen, seen
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            follower.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # still a failure; but no process or pipe left behind
            follower.kill()
            follower.communicate()
            raise
    assert follower.returncode == 130


def test_health_and_worker_once_say_what_they_found_and_did(data_dir: Path) -> None:
    code, out, _ = cm(data_dir, "health", "--json")
    assert code == 0
    assert json.loads(out) == {
        "status": "healthy",
        "services": [{"name": "storage", "status": "healthy", "required": True}],
    }
    code, out, err = cm(data_dir, "worker", "--once")
    assert code == 0, err
    assert out.startswith("worker --once: 0 tokens refreshed") and "outbox" in out
    code, out, _ = cm(data_dir, "worker", "--once", "--json")
    assert json.loads(out) == {
        "refresh": {"refreshed": 0, "failed": 0, "reauth_required": 0, "skipped": 0},
        "published": None,
    }


def test_health_reports_a_server_start_up_cannot_reach_and_answers_within_a_probe_time(
    data_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "mongo.toml"  # the password must not show; start_up_timeout_seconds stays 15
    config.write_text(
        f'storage = "mongo"\nmongo_url = "mongodb://admin:PLANTED-PW@127.0.0.1:{free_port()}/?directConnection=true"\n',
        encoding="utf-8",
    )
    started = time.monotonic()
    code, out, err = cm(data_dir, "health", "--json", "--config", str(config))
    assert time.monotonic() - started < 12, "health waited the whole start-up timeout"
    assert code == 1, err
    report = json.loads(out)
    assert report["status"] == "unhealthy"
    (storage,) = report["services"]
    assert storage["name"] == "storage" and storage["status"] == "unhealthy" and storage["required"] is True
    assert storage["reason"].startswith("cannot reach MongoDB at mongodb://***@127.0.0.1:")
    code, out, _ = cm(data_dir, "health", "--config", str(config))
    assert code == 1
    assert out.splitlines()[0].split("\t") == ["dependency", "status", "required", "reason"]
    assert out.splitlines()[1].startswith("storage\tunhealthy\tyes\tcannot reach MongoDB")
    assert "PLANTED-PW" not in out + err


# -- serve and wait --------------------------------------------------------------------------------


def test_serve_on_a_busy_port_says_so_in_one_line(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_cli("serve", "--data-dir", str(data_dir), "--port", str(port))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert f"127.0.0.1:{port} is in use" in done.stderr and "--port" in done.stderr and "CM_PORT" in done.stderr
    assert "startup complete" not in done.stderr + done.stdout


def test_wait_returns_once_serve_answers_and_fails_fast_when_it_died(data_dir: Path) -> None:
    port = free_port()
    server = start_cli("serve", "--data-dir", str(data_dir), "--port", str(port), env=clean_env(), merge_stderr=True)
    try:
        done = run_cli("wait", "--port", str(port), "--pid", str(server.pid), "--timeout", "60")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"ready: http://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    dead = run_cli("wait", "--port", str(port), "--pid", str(server.pid), "--timeout", "60")
    assert dead.returncode == 2 and f"pid {server.pid}" in dead.stderr
