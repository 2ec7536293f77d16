"""Creates the Kafka topics declared in the contracts' topic registry."""

from tsunagu_topics.create import ensure_topics

__all__ = ["ensure_topics"]
