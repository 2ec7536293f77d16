"""Create every registry topic that does not exist yet; existing topics are left as they are."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from tsunagu_contracts import TOPICS, Topic
from tsunagu_topics.bootstrap import bootstrap_servers


async def ensure_topics(bootstrap: str | Iterable[str], topics: Iterable[Topic] = TOPICS, namespace: str = "",
                        **client_options) -> list[str]:
    """Returns the names of the topics it created. `namespace` prefixes every name (tests)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(bootstrap), **client_options)
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


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Create the contracts' Kafka topics.")
    parser.add_argument("--bootstrap", required=True, help="host:port[,host:port...]")
    args = parser.parse_args()
    try:
        servers = bootstrap_servers(args.bootstrap)
    except ValueError as exc:
        parser.error(str(exc))
    created = asyncio.run(ensure_topics(servers))
    print(f"[tsunagu] topics: {len(TOPICS)} in the registry, {len(created)} created")


if __name__ == "__main__":
    main()


async def delete_namespace(bootstrap: str | Iterable[str], namespace: str) -> None:
    """Remove every topic of a namespace (tests clean up after themselves). Their empty consumer
    groups expire with the broker's offsets retention; aiokafka's admin client cannot delete groups."""
    if not namespace:
        raise ValueError("refusing to delete topics without a namespace")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(bootstrap))
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(namespace)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
