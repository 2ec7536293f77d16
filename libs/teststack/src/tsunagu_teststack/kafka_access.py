"""Each test namespace's Kafka users: the four services' SCRAM users and the ACLs the registry
derives for them, with the namespace in every principal, topic and group, created by the
infrastructure's admin user and removed with the namespace.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tsunagu_contracts.topics import SERVICES
from tsunagu_topics.acls import BrokerAccess, ensure_service_access, new_password, remove_service_access, service_user
from tsunagu_topics.security import KafkaCredentials

from tsunagu_teststack.infrastructure import Infrastructure


@dataclass
class NamespaceAccess:
    """The credentials each service runs with in one namespace; none on a PLAINTEXT broker."""

    namespace: str
    passwords: dict[str, str] = field(default_factory=dict, repr=False)

    def credentials(self, service: str) -> KafkaCredentials | None:
        if not self.passwords:
            return None
        return KafkaCredentials(service_user(service, self.namespace), self.passwords[service])


def broker_access(infrastructure: Infrastructure) -> BrokerAccess:
    return BrokerAccess(infrastructure.kafka_bootstrap, infrastructure.kafka_admin)


async def open_namespace_access(infrastructure: Infrastructure, namespace: str) -> NamespaceAccess:
    if infrastructure.kafka_admin is None:
        return NamespaceAccess(namespace)
    access = NamespaceAccess(namespace, {service: new_password() for service in SERVICES})
    await asyncio.to_thread(ensure_service_access, broker_access(infrastructure), access.passwords, namespace)
    return access


async def close_namespace_access(infrastructure: Infrastructure, access: NamespaceAccess) -> None:
    if infrastructure.kafka_admin is not None:
        await asyncio.to_thread(remove_service_access, broker_access(infrastructure), access.namespace)
