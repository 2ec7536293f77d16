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
