"""Choosing and starting the back end that provides Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import tomllib
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aiokafka import AIOKafkaConsumer

from tsunagu_topics import KafkaCredentials, aiokafka_options, bootstrap_servers
from tsunagu_topics.security import ADMIN_PRINCIPAL

log = logging.getLogger("tsunagu.teststack")

KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:15"


@dataclass(frozen=True)
class Infrastructure:
    kafka_bootstrap: str
    """host:port[,host:port...], as TSUNAGU_KAFKA_BOOTSTRAP takes it."""
    postgres_admin_dsn: str
    """A role that may create databases and roles: tests make their own scratch databases."""
    backend: Literal["environment", "testcontainers", "native"]
    kafka_admin: KafkaCredentials | None = None
    """The broker's super user, for the tests' set-up and for test clients that read or write any
    topic; None for a PLAINTEXT broker without ACLs."""

    @property
    def kafka_options(self) -> dict[str, str]:
        """aiokafka keyword arguments of a test client acting as the admin."""
        return aiokafka_options(self.kafka_admin)

    async def read_records(self, topic: str, count: int, timeout_s: float = 30) -> list:
        """The first `count` records of `topic`, read as the admin in a group of their own; each must
        arrive within `timeout_s`."""
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=self.kafka_bootstrap, auto_offset_reset="earliest",
                                    group_id=f"test-{secrets.token_hex(8)}", **self.kafka_options)
        await consumer.start()
        try:
            return [await asyncio.wait_for(consumer.getone(), timeout_s) for _ in range(count)]
        finally:
            await consumer.stop()


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "deploy" / "stack.toml").exists():
            return parent
    raise RuntimeError("deploy/stack.toml not found above the tsunagu_teststack package")


def stack_config() -> dict:
    with open(repo_root() / "deploy" / "stack.toml", "rb") as f:
        return tomllib.load(f)


def from_environment() -> Infrastructure | None:
    kafka = os.environ.get("TSUNAGU_TEST_KAFKA_BOOTSTRAP")
    postgres = os.environ.get("TSUNAGU_TEST_POSTGRES_DSN")
    if not kafka and not postgres:
        return None
    if not (kafka and postgres):
        raise RuntimeError("set both TSUNAGU_TEST_KAFKA_BOOTSTRAP and TSUNAGU_TEST_POSTGRES_DSN, or neither")
    # Checked here, so a malformed list fails the session with its reason instead of each client alike.
    password = os.environ.get("TSUNAGU_TEST_KAFKA_PASSWORD")
    admin = KafkaCredentials(os.environ.get("TSUNAGU_TEST_KAFKA_USERNAME", ADMIN_PRINCIPAL), password) \
        if password else None
    return Infrastructure(",".join(bootstrap_servers(kafka)), postgres, "environment", admin)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def from_testcontainers(resources: ExitStack) -> Infrastructure | None:
    """Containers on a Docker host; None when no Docker engine answers."""
    try:
        from docker.errors import DockerException
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:
        return None
    try:
        postgres = PostgresContainer(POSTGRES_IMAGE, username="postgres", password="postgres", dbname="postgres",
                                     driver=None)
    except DockerException:
        return None
    # The official Apache Kafka image in KRaft mode; it must advertise the port the host sees,
    # so that port is chosen before the container starts. SCRAM and ACLs as deploy/kafkactl.py
    # sets them up; passwords go in as environment, not as arguments.
    port = _free_port()
    admin = KafkaCredentials(ADMIN_PRINCIPAL, secrets.token_urlsafe(24))
    controller = secrets.token_urlsafe(24)
    kafka = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "CLIENT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"CLIENT://127.0.0.1:{port}")
        .with_env("KAFKA_INTER_BROKER_LISTENER_NAME", "CLIENT")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT")
        .with_env("KAFKA_SASL_ENABLED_MECHANISMS", "SCRAM-SHA-512")
        .with_env("KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL", "SCRAM-SHA-512")
        # The image turns `_` into `.` and `___` into `-` in property names.
        .with_env("KAFKA_LISTENER_NAME_CLIENT_SCRAM___SHA___512_SASL_JAAS_CONFIG",
                  f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                  f'username="{admin.username}" password="{admin.password}";')
        .with_env("KAFKA_LISTENER_NAME_CONTROLLER_SASL_ENABLED_MECHANISMS", "PLAIN")
        .with_env("KAFKA_SASL_MECHANISM_CONTROLLER_PROTOCOL", "PLAIN")
        .with_env("KAFKA_LISTENER_NAME_CONTROLLER_PLAIN_SASL_JAAS_CONFIG",
                  f'org.apache.kafka.common.security.plain.PlainLoginModule required username="tsunagu-controller" '
                  f'password="{controller}" user_tsunagu-controller="{controller}";')
        .with_env("KAFKA_AUTHORIZER_CLASS_NAME", "org.apache.kafka.metadata.authorizer.StandardAuthorizer")
        .with_env("KAFKA_SUPER_USERS", f"User:{admin.username};User:tsunagu-controller")
        .with_env("KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND", "false")
        # deploy/docker/kafka-scram-entrypoint.sh formats the storage with the admin's SCRAM user.
        .with_env("TSUNAGU_KAFKA_ADMIN_PASSWORD", admin.password)
        .with_volume_mapping(str(repo_root() / "deploy" / "docker" / "kafka-scram-entrypoint.sh"),
                             "/tsunagu/kafka-scram-entrypoint.sh", "ro")
        .with_kwargs(entrypoint=["/bin/bash", "/tsunagu/kafka-scram-entrypoint.sh"])
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        .waiting_for(LogMessageWaitStrategy("Kafka Server started"))
    )
    resources.enter_context(postgres)
    resources.enter_context(kafka)
    dsn = postgres.get_connection_url(driver=None)
    return Infrastructure(f"127.0.0.1:{port}", dsn, "testcontainers", admin)


def native() -> Infrastructure:
    """The stack from deploy/, started or reused (it installs what is missing)."""
    root = repo_root()
    cfg = stack_config()
    for script in ("kafkactl.py", "pgctl.py"):
        result = subprocess.run([sys.executable, str(root / "deploy" / script), "start"],
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"deploy/{script} start failed:\n{result.stdout}\n{result.stderr}")
    secrets_file = Path(os.environ.get("TSUNAGU_VAR_DIR", root / "var")) / "secrets.json"
    local_secrets = json.loads(secrets_file.read_text())
    admin = cfg["postgres"]["admin_role"]
    password = local_secrets["postgres"][admin]
    pg = cfg["postgres"]
    kafka = cfg["kafka"]
    return Infrastructure(f"{kafka['host']}:{kafka['port']}",
                          f"postgresql://{admin}:{password}@{pg['host']}:{pg['port']}/postgres", "native",
                          KafkaCredentials(ADMIN_PRINCIPAL, local_secrets["kafka"][ADMIN_PRINCIPAL]))


def provide(resources: ExitStack) -> Infrastructure:
    infra = from_environment() or from_testcontainers(resources) or native()
    log.info("test infrastructure: %s (Kafka %s)", infra.backend, infra.kafka_bootstrap)
    return infra
