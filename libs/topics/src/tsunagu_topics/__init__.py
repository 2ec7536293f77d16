"""Creates the Kafka topics declared in the contracts' topic registry; reads bootstrap server lists."""

from tsunagu_topics.bootstrap import bootstrap_servers
from tsunagu_topics.create import ensure_topics

__all__ = ["bootstrap_servers", "ensure_topics"]
