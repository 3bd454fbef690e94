"""A bad or unreachable setting fails start-up with one clear line naming it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from adapters.redaction import redact_url
from entrypoints.observability.logging import failure_outline
from tests.cli import clean_env, run_cli
from tests.servers import free_port

#: how long start-up waits for a server that does not answer (15 s by default)
START_UP_TIMEOUT = "0.5"


def serve(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    file = tmp_path / "cm.toml"
    file.write_text(config, encoding="utf-8")
    # a port in the file must not be overridden by --port, or that case would start a server
    port = [] if config.startswith("port") else ["--port", str(free_port())]
    env = clean_env(CM_START_UP_TIMEOUT_SECONDS=START_UP_TIMEOUT)
    return run_cli("serve", "--config", str(file), "--data-dir", str(tmp_path / "d"), *port, env=env)


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        (
            'storage = "mongo"\nmongo_url = "mongodb://user:PLANTED-PW@127.0.0.1:{port}/?directConnection=true"\n'
            "mongo_timeout_seconds = 0.5\n",
            "mongo_url",
        ),
        ('secrets = "etcd"\netcd_endpoint = "127.0.0.1:{port}"\netcd_timeout_seconds = 0.5\n', "etcd_endpoint"),
        (
            'storage = "mongo"\nmongo_url = "mongodb://app:PLANTED-PW@127.0.0.1:{port},127.0.0.2:{port}/?replicaSet=rs0"\n'
            "mongo_timeout_seconds = 0.5\n",
            "mongo_url",
        ),
        ('etcd_endpoint = "127.0.0.1:abc"\n', "etcd_endpoint"),
        ('events = "kafka"\nkafka_bootstrap = "127.0.0.1:{port}"\n', "kafka_bootstrap"),
        ('cache = "redis"\nredis_url = "redis://:PLANTED-PW@127.0.0.1:{port}/0"\n', "redis_url"),
        ('storage = "postgres"\n', "storage"),
        ("port = 99999\n", "port"),
        ('refresh_margin_seconds = "ten"\n', "refresh_margin_seconds"),
        ("refresh_batch_size = 0\n", "refresh_batch_size"),
        ("refresh_concurrency = 2.5\n", "refresh_concurrency"),
        ("mongo_timeout_seconds = -1\n", "mongo_timeout_seconds"),
        ('run_refresher = "maybe"\n', "run_refresher"),
        ("storage = 5\n", "storage"),
        ('events = "kafka"\nkafka_client_config = { acks = "0" }\n', "kafka_client_config"),
        ("no_such_setting = 1\n", "no_such_setting"),
        ("this is not toml", "config_file"),
    ],
    ids=[
        "mongo",
        "etcd",
        "mongo-replica-set-url",
        "etcd-bad-port",
        "kafka",
        "redis",
        "bad-choice",
        "bad-port",
        "bad-number",
        "zero-batch",
        "fractional-count",
        "negative-timeout",
        "bad-bool",
        "number-for-choice",
        "weakened-kafka-guarantee",
        "unknown",
        "bad-toml",
    ],
)
def test_bad_setting_fails_start_with_one_line(tmp_path: Path, config: str, setting: str) -> None:
    done = serve(tmp_path, config.replace("{port}", str(free_port())))
    assert done.returncode == 2, done.stdout + done.stderr
    # before the error, start-up may have logged (info) that it waits for the server to answer
    lines = [line for line in done.stderr.splitlines() if line.strip() and "start-up waits for" not in line]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"connector-manager: {setting}:"), lines[0]
    assert "PLANTED-PW" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_another_master_key_is_named_not_a_crash(tmp_path: Path) -> None:
    token = ("token", "--scoped", "--init", "--data-dir", str(tmp_path / "d"))
    first = run_cli(*token, env=clean_env(CM_MASTER_KEY="key-one"))
    assert first.returncode == 0, first.stderr
    second = run_cli(*token, env=clean_env(CM_MASTER_KEY="key-two"))
    assert second.returncode == 2
    assert second.stderr.strip().startswith("connector-manager: CM_MASTER_KEY: cannot decrypt /services/secretKeys")
    assert "key-one" not in second.stderr and "key-two" not in second.stderr


def test_equal_user_and_scoped_secrets_are_refused(tmp_path: Path) -> None:
    same = "same-secret-for-both"
    done = run_cli(
        "token",
        "--scoped",
        "--init",
        "--data-dir",
        str(tmp_path / "d"),
        env=clean_env(CM_JWT_SECRET=same, CM_SCOPED_JWT_SECRET=same),
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "connector-manager: CM_SCOPED_JWT_SECRET: must differ from the user token secret"


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        (
            'storage = "mongo"\nmongo_url = "mongodb://app:PLANTED-PW@127.0.0.1:{port}/?replicaSet=rs0"\n'
            "mongo_timeout_seconds = 0.5\n",
            "mongo_url",
        ),
        (
            'secrets = "etcd"\netcd_endpoint = "127.0.0.1:{port}"\netcd_user = "app"\n'
            'etcd_password = "PLANTED-PW"\netcd_timeout_seconds = 0.5\n',
            "etcd_endpoint",
        ),
        ('cache = "redis"\nredis_url = "redis://:PLANTED-PW@127.0.0.1:{port}/0"\n', "redis_url"),
        (
            'events = "kafka"\nkafka_bootstrap = "127.0.0.1:{port}"\n'
            'kafka_client_config = { "security.protocol" = "SASL_PLAINTEXT", "sasl.mechanism" = "PLAIN",'
            ' "sasl.username" = "app", "sasl.password" = "PLANTED-PW" }\n',
            "kafka_bootstrap",
        ),
    ],
    ids=["mongo", "etcd", "redis", "kafka"],
)
def test_a_failed_start_logged_at_debug_shows_no_credential(tmp_path: Path, config: str, setting: str) -> None:
    done = serve(tmp_path, 'log_level = "debug"\n' + config.replace("{port}", str(free_port())))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"connector-manager: {setting}: cannot reach")
    assert "PLANTED-PW" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ('cache = "redis"\nredis_url = "redis://app:PLANTED/PW@127.0.0.1:{port}/0"\n', "redis_url"),
        ('cache = "redis"\nredis_url = "redis://:PLANTED-PW@127.0.0.1:abc/0"\n', "redis_url"),
        ('cache = "redis"\nredis_url = "redsi://:PLANTED-PW@127.0.0.1/0"\n', "redis_url"),
        ('cache = "redis"\nredis_url = "redis://:PLANTED-PW@[::1/0"\n', "redis_url"),
        ('storage = "mongo"\nmongo_url = "mongodb://app:PLANTED/PW@127.0.0.1:{port}/"\n', "mongo_url"),
        ('storage = "mongo"\nmongo_url = "mongodb://app:PLANTED-PW@127.0.0.1:abc/"\n', "mongo_url"),
        (
            'iam = "mongo-user-groups"\niam_mongo_url = "mongodb://app:PLANTED?PW@127.0.0.1:{port}/"\n',
            "iam_mongo_url",
        ),
        (
            'secrets = "etcd"\netcd_endpoint = "app:PLANTED-PW@127.0.0.1:{port}"\netcd_user = "app"\n'
            'etcd_password = "PLANTED-PW"\n',
            "etcd_endpoint",
        ),
        (
            'secrets = "etcd"\netcd_endpoints = ["127.0.0.1:{port}", "app:PLANTED-PW@127.0.0.1"]\n'
            'etcd_user = "app"\netcd_password = "PLANTED-PW"\n',
            "etcd_endpoints",
        ),
        ('backend_url = "https://svc:PLANTED/PW@backend.example/"\n', "backend_url"),
    ],
    ids=[
        "redis-unescaped-slash",
        "redis-bad-port",
        "redis-bad-scheme",
        "redis-bad-ipv6",
        "mongo-unescaped-slash",
        "mongo-bad-port",
        "iam-mongo-unescaped-question-mark",
        "etcd-endpoint-with-user-info",
        "etcd-endpoints-with-user-info",
        "backend-unescaped-slash",
    ],
)
def test_a_malformed_url_setting_is_named_and_its_password_never_shown(
    tmp_path: Path, config: str, setting: str
) -> None:
    done = serve(tmp_path, 'log_level = "debug"\n' + config.replace("{port}", str(free_port())))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"connector-manager: {setting}:"), done.stderr
    assert "PLANTED" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_a_start_up_failure_logged_at_debug_shows_where_not_what() -> None:
    password = "-".join(["PLANTED", "PW"])  # built, so the frames' source lines do not show it
    try:
        try:
            raise OSError(f"redis://app:{password}@host")
        except OSError as first:
            raise ValueError(f"Port could not be cast to integer value as {password!r}") from first
    except ValueError as exc:
        outline = failure_outline(exc)
    assert password not in outline
    assert "builtins.ValueError" in outline and "builtins.OSError" in outline
    assert "test_a_start_up_failure_logged_at_debug_shows_where_not_what" in outline


@pytest.mark.parametrize(
    "url", ["redis://app:PLANTED/PW@127.0.0.1:6379/0", "redis://:PLANTED?PW@h/0", "redis://u:PLANTED#PW@h:1/0"]
)
def test_a_redacted_url_hides_a_password_with_unescaped_delimiters(url: str) -> None:
    assert "PLANTED" not in redact_url(url)
