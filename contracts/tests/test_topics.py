"""The topic registry names every topic with its producers, consumers and events."""

import uuid

from tsunagu_contracts import (
    CATALOGUE, DEAD_LETTERS, EVENT_TOPICS, TOPICS, ConsultationRegistered, PartnerDeliveries, topic_for_event,
    topics_consumed_by,
)

SERVICES = {"intake", "referral", "housing-support", "partner-notification"}


def test_every_event_travels_on_exactly_one_topic_owned_by_its_producer():
    for event in CATALOGUE:
        carriers = [t for t in EVENT_TOPICS if event in t.events]
        assert len(carriers) == 1, event
        assert carriers[0].producers == (event.producer,)


def test_topic_names_are_unique_and_versioned():
    names = [t.name for t in TOPICS]
    assert len(names) == len(set(names))
    assert all(name.startswith("tsunagu.") and name.endswith(".v1") for name in names)


def test_every_service_has_a_dead_letter_topic_and_consumes_what_others_publish():
    assert {t.producers[0] for t in DEAD_LETTERS} == SERVICES
    assert topics_consumed_by("referral") == tuple(t for t in EVENT_TOPICS if "referral" in t.consumers)
    assert topic_for_event(ConsultationRegistered) in topics_consumed_by("referral")


def test_a_partners_delivery_topics_share_one_acl_prefix():
    partner = uuid.UUID("0192f0c1-7a2e-7cc3-9a41-00000000b001")
    topic = PartnerDeliveries.for_partner(partner)
    assert topic.name.startswith(PartnerDeliveries.acl_prefix(partner))
    assert str(partner) in topic.name
    assert not any(t.name.startswith("tsunagu.partner.") for t in TOPICS), "created per partner, not at start-up"
