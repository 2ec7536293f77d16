"""Creates the Kafka topics declared in the contracts' topic registry and the ACLs derived from it;
reads bootstrap server lists; Kafka client credentials."""

from tsunagu_topics.bootstrap import bootstrap_servers
from tsunagu_topics.create import ensure_topics
from tsunagu_topics.security import KafkaCredentials, aiokafka_options

__all__ = ["KafkaCredentials", "aiokafka_options", "bootstrap_servers", "ensure_topics"]
