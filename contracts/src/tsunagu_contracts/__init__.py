"""Tsunagu's shared contracts: the events services exchange, their code lists, topics and wire format.

Depends on pydantic alone. Services and new subscribers import from here; nothing here talks to
a broker, a database or the network.
"""

from tsunagu_contracts import codes
from tsunagu_contracts.codes import NeedCategory
from tsunagu_contracts.events import *  # noqa: F403 - the catalogue is the package's public face
from tsunagu_contracts.events import __all__ as _events
from tsunagu_contracts.ids import uuid7
from tsunagu_contracts.topics import (
    DEAD_LETTERS, EVENT_TOPICS, INTAKE_CASES, PARTNER_RESPONSES, REFERRALS, TENANCIES, TOPICS, PartnerDeliveries,
    Topic, dead_letter_topic, topic_for_event, topics_consumed_by,
)
from tsunagu_contracts.wire import DecodeError, Envelope, KafkaRecord, decode, encode, source_of

__all__ = [
    *_events, "DEAD_LETTERS", "EVENT_TOPICS", "INTAKE_CASES", "PARTNER_RESPONSES", "REFERRALS", "TENANCIES", "TOPICS", "DecodeError", "Envelope", "KafkaRecord", "NeedCategory",
    "PartnerDeliveries", "Topic", "codes", "dead_letter_topic", "decode", "encode", "source_of",
    "topic_for_event", "topics_consumed_by", "uuid7",
]
