"""Tsunagu's shared contracts: the events services exchange, their code lists and their topics.

Depends on pydantic alone. Services and new subscribers import from here; nothing here talks to
a broker, a database or the network.
"""

from tsunagu_contracts.codes import NeedCategory
from tsunagu_contracts.events import ConsultationRegistered, Event
from tsunagu_contracts.topics import TOPICS, Topic, topic_for_event

__all__ = ["TOPICS", "ConsultationRegistered", "Event", "NeedCategory", "Topic", "topic_for_event"]
