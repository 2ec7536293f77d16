"""deploy/kafkactl.py starts the shapes of cluster later work needs: three nodes, and SCRAM with ACLs.

Each test starts its own cluster on ports of its own and removes it afterwards.
"""

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from tsunagu_teststack.infrastructure import repo_root
from tsunagu_topics import KafkaCredentials
from tsunagu_topics.acls import BrokerAccess

sys.path.insert(0, str(repo_root() / "deploy"))
import kafkactl as launcher  # noqa: E402 - the module; `kafkactl()` below runs its command

KAFKACTL = [sys.executable, str(repo_root() / "deploy" / "kafkactl.py")]


def kafkactl(*args: str) -> str:
    result = subprocess.run([*KAFKACTL, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def cluster():
    started = []

    def start(name: str, *options: str) -> str:
        started.append(name)
        return kafkactl("start", "--name", name, "--heap", "256m", *options)

    yield start
    for name in started:
        kafkactl("reset", "--name", name)


async def test_a_three_node_cluster_replicates_every_partition_three_times(cluster):
    bootstrap = cluster("test-three-nodes", "--nodes", "3", "--port", "19092", "--controller-port", "19192",
                        "--plaintext")
    topic = f"three-nodes-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        brokers = (await admin.describe_cluster())["brokers"]
        await admin.create_topics([NewTopic(topic, 2, 3, topic_configs={"min.insync.replicas": "2"})])
        description = (await admin.describe_topics([topic]))[0]
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"replicated", key=b"case-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"g-{uuid.uuid4()}")
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()

    assert sorted(b["node_id"] for b in brokers) == [1, 2, 3]
    assert all(len(p["replicas"]) == 3 for p in description["partitions"])
    assert record.value == b"replicated"


def scram_client(bootstrap: str, user: str, password: str) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, **KafkaCredentials(user, password).aiokafka())


def admin_password() -> str:
    return json.loads((launcher.VAR / "secrets.json").read_text())["kafka"][launcher.ADMIN_USER]


async def test_a_scram_cluster_admits_known_users_and_enforces_acls(cluster):
    bootstrap = cluster("test-scram", "--port", "29092", "--controller-port", "29192")

    admin = scram_client(bootstrap, launcher.ADMIN_USER, admin_password())
    await admin.start()
    try:
        await admin.create_topics([NewTopic("tsunagu.partner.test.deliveries", 1, 1)])
    finally:
        await admin.close()
    BrokerAccess(bootstrap, KafkaCredentials(launcher.ADMIN_USER, admin_password())).upsert_user(
        "partner", "partner-secret")

    partner = scram_client(bootstrap, "partner", "partner-secret")
    await partner.start()
    try:
        response = await partner.create_topics([NewTopic("not-allowed", 1, 1)])
    finally:
        await partner.close()
    assert response.topic_errors[0][1] == TopicAuthorizationFailedError.errno, "no ACL grants the partner anything"

    intruder = scram_client(bootstrap, "partner", "wrong-password")
    with pytest.raises(KafkaError):
        await intruder.start()
    await intruder.close()

    anonymous = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    with pytest.raises(KafkaError):
        await anonymous.start()
        await anonymous.list_topics()
    await anonymous.close()


def test_a_scram_cluster_keeps_its_passwords_off_command_lines_and_out_of_world_readable_files(cluster):
    cluster("test-scram-files", "--port", "29392", "--controller-port", "29492")
    shape = launcher.Cluster.existing("test-scram-files", None)
    pid = launcher.read_pid(shape.pidfile(1))
    properties = shape.node_dir(1) / "server.properties"

    command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert admin_password() not in command_line
    assert properties.stat().st_mode & 0o077 == 0, "server.properties holds the JAAS passwords"
    assert (launcher.VAR / "secrets.json").stat().st_mode & 0o077 == 0
    assert not (shape.node_dir(1) / "format.args").exists(), "the storage tool's argument file is gone"


def test_a_scram_cluster_has_no_anonymous_super_user_and_authenticates_its_controller_listener():
    properties = dict(line.split("=", 1) for line in launcher.Cluster(
        "unit", 1, 19092, 19192, [("tsunagu-admin", "not-used")]).properties(1).splitlines())

    assert "ANONYMOUS" not in properties["super.users"]
    assert properties["super.users"] == "User:tsunagu-admin;User:tsunagu-controller"
    assert properties["listener.security.protocol.map"] == "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    assert properties["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert properties["authorizer.class.name"].endswith("StandardAuthorizer")


def test_a_plaintext_broker_left_by_an_older_checkout_is_recreated_with_scram(cluster):
    name, ports = "test-upgrade", ("--port", "29592", "--controller-port", "29692")
    cluster(name, *ports, "--plaintext")
    assert launcher.sasl_listener("127.0.0.1", 29592) is False

    cluster(name, *ports)

    assert launcher.sasl_listener("127.0.0.1", 29592) is True
    shape = launcher.Cluster.existing(name, None)
    assert shape.formatted_security() == "SASL_PLAINTEXT", "formatted afresh, with the admin's SCRAM user"


def a_node_log_with_a_fatal_trace() -> str:
    frames = [f"\tat org.apache.kafka.example.Frame{n}.call(Frame{n}.java:{n})" for n in range(40)]
    return "\n".join([
        "[2026-11-29 05:13:38,916] INFO Starting log cleanup with a period of 300000 ms. (kafka.log.LogManager)",
        "[2026-11-29 05:13:38,921] ERROR Encountered fatal fault: Error starting LogManager (org.apache.kafka.server.fault"
        ".ProcessTerminatingFaultHandler)",
        "java.lang.OutOfMemoryError: Java heap space",
        "\tat java.base/java.nio.HeapByteBuffer.<init>(HeapByteBuffer.java:64)",
        *frames,
        "\tat org.apache.kafka.storage.internals.log.LogCleaner.startup(LogCleaner.java:207)",
        "\tat java.base/java.lang.Thread.run(Thread.java:840)",
        "[2026-11-29 05:13:39,160] INFO [BrokerServer id=1] Transition from STARTING to SHUTTING_DOWN (kafka.server.BrokerServer)",
    ])


def test_the_launchers_error_keeps_what_the_exception_was_not_only_the_end_of_its_trace(tmp_path):
    cluster = launcher.Cluster("unit", 1, 19092, 19192, [])
    cluster.root = tmp_path
    (tmp_path / "node-1" / "logs").mkdir(parents=True)
    (tmp_path / "node-1" / "logs" / "server.log").write_text(a_node_log_with_a_fatal_trace())

    excerpt = cluster.log_tail(1)

    assert "[server.log] java.lang.OutOfMemoryError: Java heap space" in excerpt
    assert "ERROR Encountered fatal fault" in excerpt
    assert "LogCleaner.startup(LogCleaner.java:207)" in excerpt, "the end of the trace is kept too"
    assert excerpt.endswith("Transition from STARTING to SHUTTING_DOWN (kafka.server.BrokerServer)")
    assert "Frame5.call" not in excerpt, "the middle of the trace is left out"


def test_a_short_log_is_shown_whole():
    lines = ["[t] INFO one", "java.lang.IllegalStateException: broken", "\tat a.B.c(B.java:1)", "[t] INFO two"]
    assert launcher.log_excerpt(lines, 15) == lines


def test_a_nodes_log_cleaner_buffer_fits_the_smallest_heap_a_test_gives_it_in_one_piece():
    properties = dict(line.split("=", 1) for line in launcher.Cluster("unit", 3, 19092, 19192, []).properties(1)
                      .splitlines())
    smallest_heap = 256 * 1024 * 1024  # `--heap 256m` in this file's clusters
    assert int(properties["log.cleaner.dedupe.buffer.size"]) <= smallest_heap // 8


async def test_a_user_locked_out_stays_locked_out_and_the_admin_still_logs_in_after_a_restart(cluster):
    ports = ("--port", "30092", "--controller-port", "30192")
    bootstrap = cluster("test-restart", *ports)
    access = BrokerAccess(bootstrap, KafkaCredentials(launcher.ADMIN_USER, admin_password()))
    access.upsert_user("partner", "partner-secret")
    access.lock_out_user("partner")

    kafkactl("stop", "--name", "test-restart")
    kafkactl("start", "--name", "test-restart", "--heap", "256m", *ports)

    admin = scram_client(bootstrap, launcher.ADMIN_USER, admin_password())
    await admin.start()
    try:
        assert isinstance(await admin.list_topics(), list)
    finally:
        await admin.close()
    locked_out = scram_client(bootstrap, "partner", "partner-secret")
    with pytest.raises(KafkaError):
        await locked_out.start()
    await locked_out.close()
