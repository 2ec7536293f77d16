"""Create every registry topic that does not exist yet; existing topics are left as they are."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from tsunagu_contracts import TOPICS, Topic
from tsunagu_contracts.topics import SERVICES
from tsunagu_topics.acls import BrokerAccess, ensure_service_access
from tsunagu_topics.bootstrap import bootstrap_servers
from tsunagu_topics.security import ADMIN_PRINCIPAL, KafkaCredentials, aiokafka_options


async def ensure_topics(bootstrap: str | Iterable[str], topics: Iterable[Topic] = TOPICS, namespace: str = "",
                        credentials: KafkaCredentials | None = None, **client_options) -> list[str]:
    """Returns the names of the topics it created. `namespace` prefixes every name (tests)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(bootstrap), **aiokafka_options(credentials),
                                **client_options)
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        replicas = min(3, brokers)
        existing = set(await admin.list_topics())
        topics = [t.model_copy(update={"name": namespace + t.name}) for t in topics]
        missing = [t for t in topics if t.name not in existing]
        if not missing:
            return []
        config_for = {t.name: {**t.config, "min.insync.replicas": str(2 if replicas >= 3 else 1)} for t in missing}
        response = await admin.create_topics(
            [NewTopic(t.name, t.partitions, replicas, topic_configs=config_for[t.name]) for t in missing])
        created = []
        for name, code, message in _errors(response):
            if code == 0:
                created.append(name)
            elif code != TopicAlreadyExistsError.errno:  # created concurrently by another caller
                raise RuntimeError(f"creating topic {name} failed: error {code} {message or ''}".strip())
        return created
    finally:
        await admin.close()


def _errors(response) -> list[tuple[str, int, str | None]]:
    rows = []
    for entry in response.topic_errors:
        name, code, *rest = entry
        rows.append((name, code, rest[0] if rest else None))
    return rows


def password_variable(service: str) -> str:
    return f"TSUNAGU_KAFKA_PASSWORD_{service.upper().replace('-', '_')}"


def main() -> None:
    """Topics, then (on a SCRAM broker) each service's user and ACLs. Passwords come from the
    environment, never the command line: TSUNAGU_KAFKA_USERNAME and TSUNAGU_KAFKA_PASSWORD (the
    admin), TSUNAGU_KAFKA_PASSWORD_<SERVICE> (each service's user, e.g. ..._PARTNER_NOTIFICATION)."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Create the contracts' Kafka topics and the services' ACLs.")
    parser.add_argument("--bootstrap", required=True, help="host:port[,host:port...]")
    args = parser.parse_args()
    try:
        servers = bootstrap_servers(args.bootstrap)
    except ValueError as exc:
        parser.error(str(exc))
    admin = None
    if os.environ.get("TSUNAGU_KAFKA_PASSWORD"):
        admin = KafkaCredentials(os.environ.get("TSUNAGU_KAFKA_USERNAME", ADMIN_PRINCIPAL),
                                 os.environ["TSUNAGU_KAFKA_PASSWORD"])
    created = asyncio.run(ensure_topics(servers, credentials=admin))
    print(f"[tsunagu] topics: {len(TOPICS)} in the registry, {len(created)} created", flush=True)
    if admin is None:
        print("[tsunagu] no TSUNAGU_KAFKA_PASSWORD: a PLAINTEXT broker, no users or ACLs applied")
        return
    missing = [password_variable(s) for s in SERVICES if not os.environ.get(password_variable(s))]
    if missing:
        parser.error(f"set {', '.join(missing)} (each service's SCRAM password)")
    ensure_service_access(BrokerAccess(servers, admin), {s: os.environ[password_variable(s)] for s in SERVICES})
    print(f"[tsunagu] Kafka users and ACLs of {len(SERVICES)} services applied from the registry")


if __name__ == "__main__":
    main()


async def delete_namespace(bootstrap: str | Iterable[str], namespace: str,
                           credentials: KafkaCredentials | None = None) -> None:
    """Remove every topic of a namespace (tests clean up after themselves). Their empty consumer
    groups expire with the broker's offsets retention; aiokafka's admin client cannot delete groups."""
    if not namespace:
        raise ValueError("refusing to delete topics without a namespace")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(bootstrap), **aiokafka_options(credentials))
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(namespace)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
