"""How a Kafka client proves who it is: SASL/SCRAM-SHA-512 credentials, or none (PLAINTEXT).

One value per principal, turned into each client library's options here, so no client is built
with its own copy of the security settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCRAM_MECHANISM = "SCRAM-SHA-512"
SASL_PLAINTEXT = "SASL_PLAINTEXT"
ADMIN_PRINCIPAL = "tsunagu-admin"
"""The super user; tooling only (topics, ACLs, SCRAM users), never a service."""


@dataclass(frozen=True)
class KafkaCredentials:
    """A SCRAM-SHA-512 principal over SASL_PLAINTEXT. The password never appears in its repr."""

    username: str
    password: str = field(repr=False)

    def aiokafka(self) -> dict[str, str]:
        """Keyword arguments of aiokafka's producer, consumer and admin client."""
        return {"security_protocol": SASL_PLAINTEXT, "sasl_mechanism": SCRAM_MECHANISM,
                "sasl_plain_username": self.username, "sasl_plain_password": self.password}

    def librdkafka(self) -> dict[str, str]:
        """Configuration entries of confluent-kafka's clients."""
        return {"security.protocol": SASL_PLAINTEXT, "sasl.mechanism": SCRAM_MECHANISM,
                "sasl.username": self.username, "sasl.password": self.password}


def aiokafka_options(credentials: KafkaCredentials | None) -> dict[str, str]:
    """aiokafka keyword arguments for these credentials; none for a PLAINTEXT broker."""
    return credentials.aiokafka() if credentials else {}


def librdkafka_options(credentials: KafkaCredentials | None) -> dict[str, str]:
    return credentials.librdkafka() if credentials else {}
