"""deploy/kafkactl.py starts the shapes of cluster later work needs: three nodes, and SCRAM with ACLs.

Each test starts its own cluster on ports of its own and removes it afterwards.
"""

import subprocess
import sys
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from tsunagu_teststack.infrastructure import repo_root

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
    bootstrap = cluster("test-three-nodes", "--nodes", "3", "--port", "19092", "--controller-port", "19192")
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
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
                               sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=user,
                               sasl_plain_password=password)


async def test_a_scram_cluster_admits_known_users_and_enforces_acls(cluster):
    bootstrap = cluster("test-scram", "--port", "29092", "--controller-port", "29192",
                        "--scram", "admin=admin-secret", "--scram", "partner=partner-secret")

    admin = scram_client(bootstrap, "admin", "admin-secret")
    await admin.start()
    try:
        await admin.create_topics([NewTopic("tsunagu.partner.test.deliveries", 1, 1)])
    finally:
        await admin.close()

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
