"""Kafka bootstrap servers as people write them: `host1:9092,host2:9093`."""

from __future__ import annotations

from collections.abc import Iterable


def bootstrap_servers(value: str | Iterable[str]) -> list[str]:
    """The `host:port` entries of a comma-separated list, each stripped; an empty entry is refused.

    Every Kafka client gets the parsed list, never the raw string: FastStream takes a string as
    one address (`host1:9092,host2` with port 9093), and aiokafka neither strips the spaces
    around an entry nor notices an empty one.
    """
    entries = [entry.strip() for entry in (value.split(",") if isinstance(value, str) else value)]
    if not entries or not all(entries):
        raise ValueError(f"Kafka bootstrap servers must be host:port entries separated by commas, "
                         f"none of them empty; got {value!r}")
    return entries
