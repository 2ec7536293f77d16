"""Who may do what on the broker, derived from the contracts' topic registry.

Each service connects as its own SCRAM user (`tsunagu-<service>`, namespace first in tests) and
may WRITE what the registry lists it as producing, READ what it consumes, READ its own dead-letter
topic (replay-dead-letters) and use its own consumer groups (prefix `tsunagu-<service>`: the
service's group, its projections' groups and its dead-letter replay group). DESCRIBE goes with
each topic and group, for the outbox relay's existence check and the lag gauges.

partner-notification also creates each partner's delivery topics and the partner's SCRAM user and
ACLs (`tsunagu.partner.` prefix: CREATE, WRITE, DESCRIBE; the cluster: ALTER, DESCRIBE, which is
what Kafka asks for CreateAcls, DeleteAcls and AlterUserScramCredentials and cannot scope further).

A partner that runs its own consumer may READ only topics and groups under its own prefix
`tsunagu.partner.<partner_id>.`.

The ACLs are applied by `python -m tsunagu_topics` (with the topics) and by the tests' set-up for
their namespace; each time, a principal's ACLs are made exactly what the registry says, so one it
no longer lists is revoked.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from uuid import UUID

from confluent_kafka.admin import (
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient, ResourcePatternType, ResourceType,
    ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion,
)

from tsunagu_contracts import TOPICS, PartnerDeliveries, dead_letter_topic
from tsunagu_contracts.topics import SERVICES
from tsunagu_topics.bootstrap import bootstrap_servers
from tsunagu_topics.security import KafkaCredentials, librdkafka_options

CLUSTER = "kafka-cluster"
# librdkafka names Kafka's CLUSTER resource type BROKER (the same wire code, 4).
_LIBRDKAFKA_TYPE = {"CLUSTER": ResourceType.BROKER}
_KAFKA_TYPE = {ResourceType.BROKER: "CLUSTER"}


def _resource_type(name: str) -> ResourceType:
    return _LIBRDKAFKA_TYPE.get(name) or ResourceType[name]
SCRAM_ITERATIONS = 8192
TIMEOUT_S = 30.0
PROPAGATION_S = 15.0


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL, from any host."""

    principal: str
    resource: str  # TOPIC, GROUP or CLUSTER
    pattern: str  # LITERAL or PREFIXED
    name: str
    operation: str  # READ, WRITE, DESCRIBE, CREATE, ALTER

    def binding(self) -> AclBinding:
        return AclBinding(_resource_type(self.resource), self.name, ResourcePatternType[self.pattern],
                          self.principal, "*", AclOperation[self.operation], AclPermissionType.ALLOW)


def service_user(service: str, namespace: str = "") -> str:
    return f"{namespace}tsunagu-{service}"


def partner_user(partner_id: UUID, namespace: str = "") -> str:
    return f"{namespace}tsunagu-partner-{partner_id}"


def service_grants(service: str, namespace: str = "") -> set[Grant]:
    principal = f"User:{service_user(service, namespace)}"

    def on(resource: str, pattern: str, name: str, *operations: str) -> set[Grant]:
        return {Grant(principal, resource, pattern, name, op) for op in operations}

    grants: set[Grant] = set()
    for topic in TOPICS:
        if service in topic.producers:
            grants |= on("TOPIC", "LITERAL", namespace + topic.name, "WRITE", "DESCRIBE")
        if service in topic.consumers or service in topic.replayed_by:
            grants |= on("TOPIC", "LITERAL", namespace + topic.name, "READ", "DESCRIBE")
    grants |= on("TOPIC", "LITERAL", namespace + dead_letter_topic(service).name, "READ")
    grants |= on("GROUP", "PREFIXED", f"{namespace}tsunagu-{service}", "READ", "DESCRIBE")
    if service in PartnerDeliveries.for_partner(UUID(int=0)).producers:
        grants |= on("TOPIC", "PREFIXED", f"{namespace}tsunagu.partner.", "CREATE", "WRITE", "DESCRIBE")
        grants |= on("CLUSTER", "LITERAL", CLUSTER, "ALTER", "DESCRIBE")
    return grants


def registry_grants(namespace: str = "") -> set[Grant]:
    """Every service's ACLs, as the registry implies them."""
    return set().union(*(service_grants(s, namespace) for s in SERVICES))


def partner_grants(partner_id: UUID, namespace: str = "") -> set[Grant]:
    """READ on the partner's own topics and consumer groups, nothing else."""
    principal = f"User:{partner_user(partner_id, namespace)}"
    prefix = namespace + PartnerDeliveries.acl_prefix(partner_id)
    return {Grant(principal, resource, "PREFIXED", prefix, op)
            for resource in ("TOPIC", "GROUP") for op in ("READ", "DESCRIBE")}


def new_password() -> str:
    return secrets.token_urlsafe(32)


class BrokerAccess:
    """SCRAM users and ACLs on the broker, through confluent-kafka's admin client (aiokafka has no
    ACL or SCRAM API). Every call blocks: call it from a thread (`asyncio.to_thread`)."""

    def __init__(self, bootstrap: str | Iterable[str], credentials: KafkaCredentials | None):
        self.client = AdminClient({"bootstrap.servers": ",".join(bootstrap_servers(bootstrap)),
                                   **librdkafka_options(credentials)})

    def upsert_user(self, user: str, password: str) -> None:
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        for future in self.client.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(user, info, password.encode())], request_timeout=TIMEOUT_S).values():
            future.result()
        # The controller has committed the user; the broker applies it from the metadata log a moment
        # later. A client that connects before then is refused, so return only once the broker has it.
        _until(lambda: self.has_user(user), f"the broker did not take up Kafka user {user}")

    def has_user(self, user: str) -> bool:
        try:
            for future in self.client.describe_user_scram_credentials([user], request_timeout=TIMEOUT_S).values():
                future.result()
        except Exception as exc:  # noqa: BLE001 - only "no such user" means absent
            if "RESOURCE_NOT_FOUND" in str(exc):
                return False
            raise
        return True

    def lock_out_user(self, user: str) -> None:
        """The user can no longer log in: its SCRAM credential becomes a password nobody holds. A
        user that does not exist is locked out already.

        Not a deletion: on Kafka 4.1 a SCRAM credential deleted from a running broker's metadata
        makes that broker, once restarted, refuse every SCRAM login, the admin's too
        (tests/test_kafka_launcher.py shows the lock-out surviving a restart)."""
        if self.has_user(user):
            self.upsert_user(user, new_password())

    def grants(self, principal: str | None = None) -> set[Grant]:
        """The broker's ALLOW ACLs, of one principal (`User:name`) or of all."""
        acl_filter = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal, None,
                                      AclOperation.ANY, AclPermissionType.ANY)
        bindings = self.client.describe_acls(acl_filter, request_timeout=TIMEOUT_S).result()
        return {Grant(b.principal, _KAFKA_TYPE.get(b.restype, b.restype.name), b.resource_pattern_type.name, b.name,
                      b.operation.name)
                for b in bindings if b.permission_type == AclPermissionType.ALLOW}

    def grant(self, grants: Iterable[Grant]) -> None:
        wanted = set(grants)
        bindings = [g.binding() for g in sorted(wanted)]
        if bindings:
            for future in self.client.create_acls(bindings, request_timeout=TIMEOUT_S).values():
                future.result()
            # As with users: the broker's authorizer applies them from the metadata log.
            _until(lambda: wanted <= self.grants(), "the broker did not take up the new ACLs")

    def revoke(self, grants: Iterable[Grant]) -> None:
        filters = [AclBindingFilter(_resource_type(g.resource), g.name, ResourcePatternType[g.pattern], g.principal,
                                    "*", AclOperation[g.operation], AclPermissionType.ALLOW) for g in sorted(set(grants))]
        if filters:
            for future in self.client.delete_acls(filters, request_timeout=TIMEOUT_S).values():
                future.result()

    def revoke_all(self, principal: str) -> None:
        """Every ACL that names the principal (`User:name`), whatever its resource."""
        acl_filter = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal, None,
                                      AclOperation.ANY, AclPermissionType.ANY)
        for future in self.client.delete_acls([acl_filter], request_timeout=TIMEOUT_S).values():
            future.result()

    def make_exactly(self, wanted: set[Grant]) -> None:
        """The ACLs of the principals in `wanted` become exactly `wanted`: missing ones are created,
        ones no longer wanted revoked."""
        current = set().union(set(), *(self.grants(p) for p in {g.principal for g in wanted}))
        self.revoke(current - wanted)
        self.grant(wanted - current)


def _until(done, failure: str) -> None:
    deadline = time.monotonic() + PROPAGATION_S
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.05)


def ensure_service_access(access: BrokerAccess, passwords: Mapping[str, str], namespace: str = "") -> None:
    """Each service's SCRAM user (with the password given for it) and its registry-derived ACLs."""
    for service in SERVICES:
        access.upsert_user(service_user(service, namespace), passwords[service])
    access.make_exactly(registry_grants(namespace))


def remove_service_access(access: BrokerAccess, namespace: str) -> None:
    """Undo `ensure_service_access` for a namespace (tests clean up after themselves)."""
    if not namespace:
        raise ValueError("refusing to remove the services' own users without a namespace")
    for service in SERVICES:
        access.revoke_all(f"User:{service_user(service, namespace)}")
        access.lock_out_user(service_user(service, namespace))


def provision_partner_access(access: BrokerAccess, partner_id: UUID, namespace: str = "") -> KafkaCredentials:
    """A new SCRAM user for the partner, fenced into its own prefix; the password exists only in the
    answer (the broker keeps a salted SCRAM verifier). Registering again replaces the password."""
    credentials = KafkaCredentials(partner_user(partner_id, namespace), new_password())
    access.upsert_user(credentials.username, credentials.password)
    access.make_exactly(partner_grants(partner_id, namespace))
    return credentials


def remove_partner_access(access: BrokerAccess, partner_id: UUID, namespace: str = "") -> None:
    """Every ACL naming the partner's user is removed and the user is locked out; it can no longer
    connect or read.
    Removing a partner that has none is not an error."""
    access.revoke_all(f"User:{partner_user(partner_id, namespace)}")
    access.lock_out_user(partner_user(partner_id, namespace))
