"""Settings every service reads from its environment (prefix `TSUNAGU_`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tsunagu_topics import KafkaCredentials, aiokafka_options, bootstrap_servers


def public_key_algorithms(value: list[str]) -> list[str]:
    """Signature algorithms for staff tokens: public-key ones only (an HMAC key would be a shared secret)."""
    if any(alg.upper().startswith("HS") or alg.lower() == "none" for alg in value):
        raise ValueError("staff tokens are checked with public keys only: no HS* or none algorithm")
    return value


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TSUNAGU_", extra="ignore")

    http_host: str = Field(default="127.0.0.1", description="Address the HTTP server binds to.")
    http_port: int = Field(ge=1, le=65535, description="Port of the service's HTTP API.")
    # NoDecode: the variable is a comma-separated list, not the JSON pydantic-settings expects for lists.
    kafka_bootstrap: Annotated[list[str], NoDecode] = Field(
        default=["127.0.0.1:9092"], description="Kafka bootstrap servers, comma-separated host:port entries.")
    kafka_security_protocol: Literal["SASL_PLAINTEXT", "PLAINTEXT"] = Field(default="SASL_PLAINTEXT", description=(
        "SASL_PLAINTEXT: SCRAM-SHA-512 as kafka_username (the broker's ACLs decide what it may do); "
        "PLAINTEXT only for a broker without authentication (the fault matrix's private clusters)."))
    kafka_username: str = Field(default="", description="The service's own SCRAM user, e.g. `tsunagu-intake`.")
    kafka_password: SecretStr = Field(default=SecretStr(""), description="That user's SCRAM password.")
    database_url: SecretStr = Field(description="postgresql:// URL of the service's own database and role.")
    otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP collector base URL; unset: no export.")
    readiness_timeout_s: float = Field(default=2.0, gt=0, description="Time each readiness check may take.")
    database_pool_size: int = Field(default=10, ge=1)
    consumer_pause_first_s: float = Field(default=0.5, gt=0, description=(
        "First pause of a consumer whose database is unavailable; each pause after it is twice as long."))
    consumer_pause_max_s: float = Field(default=30.0, gt=0, description="Longest pause of such a consumer.")
    topic_namespace: str = Field(default="", pattern=r"^([a-z0-9-]+\.)?$", description=(
        "Prefix of every topic and consumer group, e.g. `test-1a2b.`; empty in production. Lets tests "
        "share one broker without seeing each other's records."))
    instance_id: str = Field(default="", pattern=r"^[A-Za-z0-9_-]{0,64}$", description=(
        "This process's stable name among the service's instances, e.g. `referral-1`: its consumers "
        "join their group as static members (KIP-345), so a restart takes back the same partitions "
        "without a rebalance. Unique per running instance; empty: dynamic membership."))
    failpoint: str = Field(default="", description="Fault injection for tests; empty in production.")
    max_request_body_bytes: int = Field(default=256 * 1024, ge=1024, description=(
        "Largest request body the HTTP API accepts, in bytes; a larger one is answered 413 before it is read "
        "further (also a chunked body without Content-Length)."))
    internal_port: int | None = Field(default=None, ge=1, le=65535, description=(
        "Port of the service's internal API (service-to-service calls), served apart from the public "
        "port; unset: the service serves no internal API."))
    internal_host: str = Field(default="127.0.0.1", description="Address the internal API binds to.")
    service_signing_key: SecretStr = Field(default=SecretStr(""), description=(
        "This service's own Ed25519 private key (base64url of its 32 bytes): signs the tokens it calls "
        "other services with. No other service holds it."))
    service_callers: dict[str, str] = Field(default_factory=dict, description=(
        "JSON object: the services allowed to call this one, by name, with their Ed25519 public keys "
        "(base64url). A service token signed by any other key is refused."))
    staff_issuer: str = Field(default="", description="Issuer (`iss`) of staff tokens: the identity provider.")
    staff_jwks_url: str = Field(default="", description=(
        "JWKS of the staff identity provider (https://…, or file://… for the development issuer)."))
    staff_audience: str = Field(default="", description="Audience (`aud`) staff tokens must be issued for.")
    staff_role_claim: str = Field(default="tsunagu_role", description=(
        "Claim naming the staff member's role (counter, coordinator, council, ops); a string, or a list "
        "holding exactly one of them."))
    staff_algorithms: list[str] = Field(default=["RS256", "ES256", "EdDSA"], description=(
        "Signature algorithms accepted on staff tokens (JSON list); never an HMAC one."))
    outbox_max_attempts: int = Field(default=5, ge=1, le=50, description="Failed publishes of one outbox row "
                                     "before it is parked and the relay moves on.")
    outbox_first_retry_s: float = Field(default=2.0, gt=0, description="Wait after an outbox row's first failure; "
                                        "doubled after each further one.")
    outbox_max_retry_s: float = Field(default=60.0, gt=0)
    outbox_parked_retry_s: float = Field(default=900.0, gt=0, description="How often a parked row is tried again.")
    outbox_publish_timeout_s: float = Field(default=10.0, gt=0, description="How long one publish may take.")

    @field_validator("staff_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        return public_key_algorithms(value)

    @field_validator("kafka_bootstrap", mode="before")
    @classmethod
    def _split_bootstrap(cls, value: str | list[str]) -> list[str]:
        return bootstrap_servers(value)

    @property
    def kafka_credentials_missing(self) -> str | None:
        """Why the service cannot connect to Kafka as configured (checked before it starts), or None.
        Not a validator: building the app offline (openapi, tests with TestKafkaBroker) needs none."""
        if self.kafka_security_protocol == "SASL_PLAINTEXT" and not (
                self.kafka_username and self.kafka_password.get_secret_value()):
            return ("TSUNAGU_KAFKA_USERNAME and TSUNAGU_KAFKA_PASSWORD (the service's SCRAM user) are not set; "
                    "they are needed unless TSUNAGU_KAFKA_SECURITY_PROTOCOL=PLAINTEXT")
        return None

    @property
    def kafka_credentials(self) -> KafkaCredentials | None:
        if self.kafka_security_protocol == "PLAINTEXT":
            return None
        if reason := self.kafka_credentials_missing:
            raise ValueError(reason)
        return KafkaCredentials(self.kafka_username, self.kafka_password.get_secret_value())

    @property
    def kafka_options(self) -> dict[str, str]:
        """What every aiokafka client of the service is built with, beside its bootstrap servers."""
        return aiokafka_options(self.kafka_credentials)
