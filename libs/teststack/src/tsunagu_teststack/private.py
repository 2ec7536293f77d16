"""Infrastructure a fault test may break: a Kafka cluster and a PostgreSQL server of its own, on
free loopback ports, so killing them never disturbs the shared stack other tests use.

Both are started with the project's own launchers (deploy/kafkactl.py, deploy/pgctl.py's
PostgreSQL binaries), removed when the test ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tsunagu_teststack.infrastructure import repo_root

sys.path.insert(0, str(repo_root() / "deploy"))
import kafkactl  # noqa: E402 - the project's launcher, standard library only
import pgctl  # noqa: E402


def free_port_run(length: int, low: int = 20000, high: int = 40000) -> int:
    """The first port of `length` consecutive free loopback ports."""
    for base in range(low + os.getpid() % 1000 * 10, high, length + 7):
        if all(_free(base + i) for i in range(length)):
            return base
    raise RuntimeError("no run of free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class PrivateKafka:
    """A KRaft cluster of `nodes` brokers (replication 3 and min.insync 2 when there are three)."""

    HEAP = "256m"

    def __init__(self, name: str, nodes: int = 1):
        port = free_port_run(nodes * 2 + 100)
        self.cluster = kafkactl.Cluster(name, nodes, port, port + 100, [])

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def start(self) -> "PrivateKafka":
        self.cluster.start(self.HEAP)
        return self

    def kill(self, node: int = 1) -> None:
        pid = kafkactl.read_pid(self.cluster.pidfile(node))
        if pid:
            os.killpg(pid, signal.SIGKILL)
            kafkactl.wait_until(lambda: not kafkactl.read_pid(self.cluster.pidfile(node)), 10, 0.1)

    def restart(self, node: int = 1) -> None:
        self.cluster.restart_node(node, self.HEAP)

    def remove(self) -> None:
        self.cluster.stop()
        shutil.rmtree(self.cluster.root, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL server in a temporary directory; its superuser is the admin tests create with."""

    def __init__(self):
        self.bin = pgctl.install()
        self.port = free_port_run(1)
        self.root = Path(tempfile.mkdtemp(prefix="tsunagu-pg-"))
        self.data = self.root / "data"
        self.password = "private"
        self.user = pgctl.DB_OS_USER

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, input: str | None = None) -> None:
        subprocess.run(argv, check=True, capture_output=True, text=True, input=input,
                       user=self.user if pgctl.IS_ROOT else None)

    def start(self) -> "PrivatePostgres":
        if not (self.data / "PG_VERSION").exists():
            if pgctl.IS_ROOT:
                shutil.chown(self.root, self.user, self.user)
            pwfile = self.root / "pw"
            pwfile.write_text(self.password)
            if pgctl.IS_ROOT:
                shutil.chown(pwfile, self.user, self.user)
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                      "--locale=C.UTF-8", "--auth=scram-sha-256", f"--pwfile={pwfile}")
            with open(self.data / "postgresql.conf", "a") as f:
                f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                        f"unix_socket_directories = '{self.root}'\nmax_connections = 200\n")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start")
        return self

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` is a crash: no shutdown checkpoint, clients cut off."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop("fast")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
