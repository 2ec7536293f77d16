#!/usr/bin/env python3
"""Apache Kafka in KRaft mode from its Maven Central artifacts, on the installed JDK.

    kafkactl.py fetch                        resolve the broker's class path into the user cache
    kafkactl.py start [--nodes 1|3] [--plaintext] [--name NAME] [--port P] [--controller-port P]
    kafkactl.py stop  [--name NAME]
    kafkactl.py status [--name NAME]

One combined broker+controller node on 127.0.0.1:9092 by default; `--nodes 3` starts a three-node
quorum on consecutive ports (replication factor 3, min ISR 2).

The client listener speaks SASL_PLAINTEXT with SCRAM-SHA-512 and the StandardAuthorizer denies
whatever no ACL allows. Its one user at format time is the super user `tsunagu-admin`, for tooling
only (topics, ACLs, the services' SCRAM users: `python -m tsunagu_topics`). The controller
listener authenticates with SASL PLAIN (KRaft's controller listener cannot use SCRAM) as its own
principal. Passwords are generated into var/secrets.json (mode 0600); they reach the broker
through its 0600 server.properties and the storage tool through a 0600 argument file, never
through a command line. `--plaintext` starts the old unauthenticated shape, for the fault
matrix's private clusters.

Starting is idempotent: a broker already answering on the port with the same security is reused.
One that answers in PLAINTEXT where SCRAM is wanted (started by an older checkout), or a data
directory formatted without SCRAM users, is stopped and formatted afresh. Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
import struct
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proc import (  # noqa: E402
    CACHE, DEPLOY, VAR, StepFailed, dev_secrets, main_guard, port_open, read_pid, run, say,
    spawn_detached, stack, terminate, wait_until, write_private,
)

POM = DEPLOY / "kafka" / "pom.xml"
LOG4J = DEPLOY / "kafka" / "log4j2.properties"
SCRAM = "SCRAM-SHA-512"
ADMIN_USER = "tsunagu-admin"
CONTROLLER_USER = "tsunagu-controller"


def secure_users() -> list[tuple[str, str]]:
    """The SCRAM users a secure cluster is formatted with: the tooling's super user alone."""
    return [(ADMIN_USER, dev_secrets()["kafka"][ADMIN_USER])]


def kafka_version() -> str:
    text = POM.read_text()
    return text.split("<kafka.version>", 1)[1].split("<", 1)[0]


def lib_dir() -> Path:
    return CACHE / f"kafka-{kafka_version()}" / "lib"


def fetch() -> Path:
    """Copy the broker's runtime class path from Maven Central into the cache (once)."""
    lib = lib_dir()
    done = lib / ".complete"
    if done.exists():
        return lib
    if shutil.which("mvn") is None:
        raise StepFailed("Maven (mvn) is not installed; install it (apt-get install maven) and retry.")
    if shutil.which("java") is None:
        raise StepFailed("Java is not installed; Kafka needs JDK 17 or newer (apt-get install openjdk-17-jdk-headless).")
    say(f"fetching Apache Kafka {kafka_version()} from Maven Central into {lib}")
    tmp = lib.with_name("lib.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    run(["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"], what="Resolving Kafka with Maven")
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    done.touch()
    return lib


def new_cluster_id() -> str:
    """A URL-safe base64 UUID of 22 characters, as Kafka makes them: never starting with '-', which
    the storage tool's argument parser would take for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Kafka broker answers an ApiVersions request on host:port."""
    client_id = b"tsunagu-probe"
    header = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(header)) + header)
            raw = sock.recv(8)
    except OSError:
        return False
    return len(raw) == 8 and struct.unpack(">ii", raw)[1] == 7


def sasl_listener(host: str, port: int, timeout: float = 1.0) -> bool | None:
    """Whether the listener on host:port expects SASL: a SaslHandshake for SCRAM-SHA-512 succeeds
    before authentication only there (a PLAINTEXT listener answers ILLEGAL_SASL_STATE). None when
    nothing answers."""
    client_id = b"tsunagu-probe"
    mechanism = SCRAM.encode()
    request = (struct.pack(">hhih", 17, 1, 9, len(client_id)) + client_id
               + struct.pack(">h", len(mechanism)) + mechanism)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            raw = sock.recv(10)
    except OSError:
        return None
    if len(raw) < 10 or struct.unpack(">i", raw[4:8])[0] != 9:
        return None
    return struct.unpack(">h", raw[8:10])[0] == 0


def is_trace_line(line: str) -> bool:
    """A line of a Java stack trace after its first: a frame, `... 12 more`, a cause or a suppressed one."""
    stripped = line.lstrip()
    if stripped.startswith(("Caused by: ", "Suppressed: ")):
        return True
    return stripped != line and stripped.startswith(("at ", "... "))


def log_excerpt(lines: list[str], keep: int) -> list[str]:
    """The last `keep` lines, and, when they cut the last stack trace short, its head before them.

    The tail of a trace only names frames; the head says what happened: the log record that
    reported it, the exception's type and message, where it was thrown, and each `Caused by:`.
    """
    tail = max(0, len(lines) - keep)
    frames = [i for i, line in enumerate(lines) if is_trace_line(line)]
    if not frames:
        return lines[tail:]
    first = frames[-1]
    while first > 0 and is_trace_line(lines[first - 1]):
        first -= 1
    exception_line = first - 1
    if exception_line < 0 or exception_line >= tail:
        return lines[tail:]
    head_end = min(first + 3, tail)
    causes = [line for line in lines[head_end:tail] if line.lstrip().startswith("Caused by: ")]
    return [*lines[max(0, exception_line - 1):head_end], *causes, "\t...", *lines[tail:]]


class Cluster:
    """A named local cluster: its nodes' ports, directories and configuration."""

    def __init__(self, name: str, nodes: int, port: int, controller_port: int, scram: list[tuple[str, str]]):
        self.name, self.nodes, self.port, self.controller_port, self.scram = name, nodes, port, controller_port, scram
        self.host = stack()["kafka"]["host"]
        self.root = VAR / "kafka" / name

    def client_port(self, node: int) -> int:
        return self.port + node - 1

    def quorum_port(self, node: int) -> int:
        return self.controller_port + node - 1

    def node_dir(self, node: int) -> Path:
        return self.root / f"node-{node}"

    def pidfile(self, node: int) -> Path:
        return self.node_dir(node) / "kafka.pid"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{self.client_port(n)}" for n in range(1, self.nodes + 1))

    def properties(self, node: int) -> str:
        replicas = min(3, self.nodes)
        min_isr = 2 if self.nodes >= 3 else 1
        client_protocol = "SASL_PLAINTEXT" if self.scram else "PLAINTEXT"
        controller_protocol = "SASL_PLAINTEXT" if self.scram else "PLAINTEXT"
        lines = {
            "process.roles": "broker,controller",
            "node.id": str(node),
            "listeners": f"CLIENT://{self.host}:{self.client_port(node)},CONTROLLER://{self.host}:{self.quorum_port(node)}",
            "advertised.listeners": f"CLIENT://{self.host}:{self.client_port(node)}",
            "listener.security.protocol.map": f"CLIENT:{client_protocol},CONTROLLER:{controller_protocol}",
            "inter.broker.listener.name": "CLIENT",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.node_dir(node) / "data"),
            "num.partitions": "3",
            "default.replication.factor": str(replicas),
            "min.insync.replicas": str(min_isr),
            "offsets.topic.replication.factor": str(replicas),
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": str(min_isr),
            "share.coordinator.state.topic.replication.factor": str(replicas),
            "share.coordinator.state.topic.min.isr": str(min_isr),
            "group.initial.rebalance.delay.ms": "0",
            # The log cleaner allocates this buffer at start-up as one array on the heap. Kafka's default,
            # 128 MiB, needs 129 free 1 MiB G1 regions in a row, more than half of the 256 MiB heap the
            # tests give a node: with 18 MiB in use after two full GCs, G1 still did not always find
            # them (its parallel compaction leaves live regions where its workers put them) and the node
            # died with OutOfMemoryError in LogCleaner.startup. 16 MiB dedupes ~600,000 keys per pass.
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            # A broker that died is fenced, and its partitions led elsewhere, after this long without a
            # heartbeat (Kafka's default is 9 s, which is how long the whole loop stalled).
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
            # Topics come from the contracts' registry; a typo must not create one silently.
            "auto.create.topics.enable": "false",
        }
        if self.nodes == 1:
            lines["controller.quorum.bootstrap.servers"] = f"{self.host}:{self.quorum_port(1)}"
        else:
            lines["controller.quorum.voters"] = ",".join(
                f"{n}@{self.host}:{self.quorum_port(n)}" for n in range(1, self.nodes + 1))
            # When the node that dies is the active controller, nothing is fenced until a new one is
            # elected, and its broker sessions then start afresh (broker.session.timeout.ms again).
            # Measured in fault R3: election 1.8-3.1 s with Kafka's defaults (2 s without a fetch
            # from the leader, then up to 1 s random backoff), then 3.1 s more before the leaders
            # moved: a 5-6.5 s stall instead of 3.2 s when the controller survives. A spurious
            # election (a starved JVM on two shared cores) fences no broker and moves no leader.
            # Killing the active controller under acks=all sends, every partition was writable
            # again after 5.16 and 5.14 s with the defaults, 4.07 and 4.60 s with these.
            lines["controller.quorum.fetch.timeout.ms"] = "1000"
            lines["controller.quorum.election.timeout.ms"] = "500"
        if self.scram:
            admin, password = self.scram[0]
            controller = self.controller_password()
            lines |= {
                "sasl.enabled.mechanisms": SCRAM,
                "sasl.mechanism.inter.broker.protocol": SCRAM,
                "listener.name.client.scram-sha-512.sasl.jaas.config":
                    f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                    f'username="{admin}" password="{password}";',
                # KRaft's controller listener cannot use SCRAM (its users live in the metadata the
                # controller serves): PLAIN, with the one controller principal it accepts.
                "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
                "sasl.mechanism.controller.protocol": "PLAIN",
                "listener.name.controller.plain.sasl.jaas.config":
                    f'org.apache.kafka.common.security.plain.PlainLoginModule required '
                    f'username="{CONTROLLER_USER}" password="{controller}" user_{CONTROLLER_USER}="{controller}";',
                "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                # No anonymous principal: the controller listener authenticates too.
                "super.users": f"User:{admin};User:{CONTROLLER_USER}",
                "allow.everyone.if.no.acl.found": "false",
            }
        return "".join(f"{k}={v}\n" for k, v in lines.items())

    def controller_password(self) -> str:
        return dev_secrets()["kafka"][CONTROLLER_USER]

    @property
    def security(self) -> str:
        return "SASL_PLAINTEXT" if self.scram else "PLAINTEXT"

    def formatted_security(self) -> str | None:
        """The client listener's security the data directories were formatted for; None when unformatted.
        Data formatted before SCRAM existed here has no marker and counts as PLAINTEXT."""
        if not any((self.node_dir(n) / "data" / "meta.properties").exists() for n in range(1, self.nodes + 1)):
            return None
        marker = self.root / "security.json"
        return json.loads(marker.read_text())["client"] if marker.exists() else "PLAINTEXT"

    def running_nodes(self) -> list[int]:
        return [n for n in range(1, self.nodes + 1) if read_pid(self.pidfile(n))]

    def remember_shape(self) -> None:
        """Stop and status must find every node of a cluster without being told its shape again."""
        self.root.mkdir(parents=True, exist_ok=True)
        shape = {"nodes": self.nodes, "port": self.port, "controller_port": self.controller_port,
                 "security": self.security}
        (self.root / "cluster.json").write_text(json.dumps(shape))

    @classmethod
    def existing(cls, name: str, default: "Cluster") -> "Cluster":
        shape_file = VAR / "kafka" / name / "cluster.json"
        if not shape_file.exists():
            return default
        shape = json.loads(shape_file.read_text())
        secure = shape.get("security", "PLAINTEXT") != "PLAINTEXT"
        return cls(name, shape["nodes"], shape["port"], shape["controller_port"], secure_users() if secure else [])

    def answering(self) -> bool:
        return all(kafka_answers(self.host, self.client_port(n)) for n in range(1, self.nodes + 1))

    def security_matches(self) -> bool:
        return all(sasl_listener(self.host, self.client_port(n)) == bool(self.scram) for n in range(1, self.nodes + 1))

    def check_ports_free(self) -> None:
        for n in range(1, self.nodes + 1):
            for port in (self.client_port(n), self.quorum_port(n)):
                if port_open(self.host, port):
                    raise StepFailed(
                        f"port {self.host}:{port} is already in use by another program, so Kafka "
                        f"cannot start. Stop that program or choose other ports (--port/--controller-port).")

    def format(self, lib: Path, node: int) -> None:
        ndir = self.node_dir(node)
        if (ndir / "data" / "meta.properties").exists():
            return
        cluster_id_file = self.root / "cluster.id"
        if not cluster_id_file.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            cluster_id_file.write_text(new_cluster_id())
        tool = ["kafka.tools.StorageTool", "format",
                "-t", cluster_id_file.read_text().strip(), "-c", str(ndir / "server.properties")]
        if self.nodes == 1:
            tool.append("--standalone")
        for name, password in self.scram:
            tool += ["--add-scram", f"{SCRAM}=[name={name},password={password}]"]
        # The java launcher reads the main class and its arguments from this 0600 file, so no
        # password shows on a command line (/proc/<pid>/cmdline holds `@<file>` only).
        argfile = ndir / "format.args"
        write_private(argfile, "".join(f'"{arg}"\n' for arg in tool))
        try:
            run([*self.java(lib, node, heap="256m"), f"@{argfile}"], what=f"Formatting Kafka storage for node {node}")
        finally:
            argfile.unlink(missing_ok=True)
        write_private(self.root / "security.json", json.dumps({"client": self.security}))

    def java(self, lib: Path, node: int, heap: str) -> list[str]:
        logs = self.node_dir(node) / "logs"
        return ["java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J}", f"-Dkafka.logs.dir={logs}",
                "-cp", f"{lib}/*"]

    def start(self, heap: str) -> bool:
        """Start every node; returns False when a running cluster was reused."""
        if self.answering():
            if self.security_matches():
                say(f"Kafka is already running on {self.bootstrap}; reusing it")
                return False
            if not self.running_nodes():
                raise StepFailed(
                    f"a Kafka broker on {self.bootstrap} is not {self.security}, and no process of this "
                    f"checkout's cluster `{self.name}` runs it; stop it (it was started elsewhere) and retry.")
            say(f"Kafka on {self.bootstrap} is not {self.security} (started by an older checkout); recreating it")
            self.stop()
        formatted = self.formatted_security()
        if formatted is not None and formatted != self.security:
            say(f"Kafka's data in {self.root} was formatted for {formatted}, not {self.security}; formatting afresh")
            self.stop()
            for node in range(1, self.nodes + 1):
                shutil.rmtree(self.node_dir(node) / "data", ignore_errors=True)
        running = self.running_nodes()
        if running:
            # Started by us earlier but not answering yet (still starting, or wedged): restart cleanly.
            self.stop()
        self.check_ports_free()
        lib = fetch()
        self.remember_shape()
        for node in range(1, self.nodes + 1):
            ndir = self.node_dir(node)
            (ndir / "logs").mkdir(parents=True, exist_ok=True)
            write_private(ndir / "server.properties", self.properties(node))  # it holds the JAAS passwords
            self.format(lib, node)
        for node in range(1, self.nodes + 1):
            ndir = self.node_dir(node)
            pid = spawn_detached([*self.java(lib, node, heap), "kafka.Kafka", str(ndir / "server.properties")],
                                 log=ndir / "logs" / "stdout.log").pid
            self.pidfile(node).write_text(str(pid))
        say(f"starting Kafka {kafka_version()} ({self.nodes} node{'s' if self.nodes > 1 else ''}) on {self.bootstrap}")
        all_up = lambda: len(self.running_nodes()) == self.nodes  # noqa: E731
        if not wait_until(lambda: self.answering() or not all_up(), timeout=120, interval=0.5) \
                or not self.answering():
            why = "a node exited during start-up" if not all_up() else "it did not answer within two minutes"
            tails = "\n".join(f"--- node {n}: {self.log_tail(n)}" for n in range(1, self.nodes + 1))
            self.stop()
            raise StepFailed(f"Kafka did not start: {why}.\n{tails}")
        say(f"Kafka is ready on {self.bootstrap}")
        return True

    def restart_node(self, node: int, heap: str) -> None:
        """Start one node of a formatted cluster again (after it died), and wait until it answers."""
        if read_pid(self.pidfile(node)):
            return
        ndir = self.node_dir(node)
        pid = spawn_detached([*self.java(fetch(), node, heap), "kafka.Kafka", str(ndir / "server.properties")],
                             log=ndir / "logs" / "stdout.log").pid
        self.pidfile(node).write_text(str(pid))
        if not wait_until(lambda: kafka_answers(self.host, self.client_port(node)) or not read_pid(self.pidfile(node)),
                          timeout=120, interval=0.5) or not read_pid(self.pidfile(node)):
            raise StepFailed(f"Kafka node {node} did not start again:\n{self.log_tail(node)}")

    def log_tail(self, node: int, lines: int = 15) -> str:
        """The last lines of a node's logs, for an error message that explains itself."""
        out = []
        for name in ("stdout.log", "server.log"):
            path = self.node_dir(node) / "logs" / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()
                out += [f"[{name}] {line}" for line in log_excerpt(text, lines)]
        return "\n".join(out) or "(no log)"

    def stop(self) -> None:
        pids = [pid for n in range(1, self.nodes + 1) if (pid := read_pid(self.pidfile(n)))]
        terminate(*pids, timeout=30)
        for node in range(1, self.nodes + 1):
            self.pidfile(node).unlink(missing_ok=True)
        if pids:
            say(f"stopped Kafka ({self.name})")


def parse(argv: list[str]) -> argparse.Namespace:
    cfg = stack()["kafka"]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["fetch", "start", "stop", "status", "reset"])
    p.add_argument("--name", default="dev", help="cluster name; its files live in var/kafka/NAME")
    p.add_argument("--nodes", type=int, choices=[1, 3], default=1)
    p.add_argument("--port", type=int, default=cfg["port"], help="client port of node 1")
    p.add_argument("--controller-port", type=int, default=cfg["controller_port"])
    p.add_argument("--heap", default=cfg["heap"])
    p.add_argument("--plaintext", action="store_true",
                   help="no authentication and no ACLs (the fault matrix's private clusters); default: SCRAM")
    return p.parse_args(argv)


def main() -> int:
    args = parse(sys.argv[1:])
    cluster = Cluster(args.name, args.nodes, args.port, args.controller_port,
                      [] if args.plaintext else secure_users())
    if args.command != "start":
        cluster = Cluster.existing(args.name, cluster)
    if args.command == "fetch":
        print(fetch())
    elif args.command == "start":
        cluster.start(args.heap)
        print(cluster.bootstrap)
    elif args.command == "stop":
        cluster.stop()
    elif args.command == "reset":
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
        say(f"removed {cluster.root}")
    elif args.command == "status":
        state = "answering" if cluster.answering() else "not answering"
        print(f"{cluster.bootstrap} ({cluster.security}): {state}; running nodes: {cluster.running_nodes() or 'none'}")
        return 0 if cluster.answering() else 3
    return 0


if __name__ == "__main__":
    main_guard(main)
