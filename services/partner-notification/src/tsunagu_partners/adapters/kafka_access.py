"""A partner's own Kafka user, fenced into its own topic prefix (`tsunagu.partner.<id>.`).

The partner-notification service's Kafka user creates and removes it: its ACLs allow CREATE,
WRITE and DESCRIBE under the `tsunagu.partner.` prefix and ALTER and DESCRIBE on the cluster
(CreateAcls, DeleteAcls and AlterUserScramCredentials need that; Kafka cannot scope it further).
confluent-kafka's admin client blocks, so every call runs in a worker thread.

Concurrency: the broker is the single writer of users and ACLs. Registering a partner makes a
new partner id, so two registrations never touch the same user; removing a partner twice, or
while it is being provisioned, leaves it removed or provisioned as the last call says, and
deleting what is already gone is not an error.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from tsunagu_servicehost.settings import ServiceSettings
from tsunagu_topics.acls import BrokerAccess, provision_partner_access, remove_partner_access
from tsunagu_topics.security import KafkaCredentials


def _access(settings: ServiceSettings) -> BrokerAccess | None:
    credentials = settings.kafka_credentials
    # A PLAINTEXT broker has no users and no authorizer: nothing to create or remove.
    return BrokerAccess(settings.kafka_bootstrap, credentials) if credentials else None


async def provision_partner(settings: ServiceSettings, partner_id: UUID) -> KafkaCredentials | None:
    """The partner's new SCRAM user with READ on its own topics and consumer groups; None on a
    PLAINTEXT broker. The password is in the answer only: the broker keeps a salted verifier."""
    access = _access(settings)
    if access is None:
        return None
    return await asyncio.to_thread(provision_partner_access, access, partner_id, settings.topic_namespace)


async def remove_partner(settings: ServiceSettings, partner_id: UUID) -> None:
    """For deactivation: every ACL of the partner's user is removed and the user is locked out (its
    password replaced by one nobody holds); it can no longer connect."""
    access = _access(settings)
    if access is not None:
        await asyncio.to_thread(remove_partner_access, access, partner_id, settings.topic_namespace)


class BrokerPartnerAccess:
    """Deactivation's revocation (handlers.registry.PartnerKafkaAccess) on this deployment's broker."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings

    async def revoke(self, partner_id: UUID, kafka_topic: str | None) -> None:
        if kafka_topic is not None:  # only a partner with its own topic was given a user
            await remove_partner(self.settings, partner_id)
