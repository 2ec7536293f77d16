"""The ACLs each Kafka user gets follow from the topic registry alone."""

from uuid import UUID

from tsunagu_contracts import EVENT_TOPICS, INTAKE_CASES, REFERRALS, PartnerDeliveries, dead_letter_topic
from tsunagu_contracts.topics import SERVICES
from tsunagu_topics.acls import Grant, partner_grants, registry_grants, service_grants


def test_a_service_may_write_exactly_the_topics_the_registry_says_it_produces():
    for service in SERVICES:
        written = {g.name for g in service_grants(service) if g.resource == "TOPIC" and g.operation == "WRITE"
                   and g.pattern == "LITERAL"}
        produced = {t.name for t in EVENT_TOPICS if service in t.producers} | {dead_letter_topic(service).name}
        assert written == produced, service


def test_referral_reads_intakes_topic_but_may_not_write_it():
    referral = service_grants("referral", "test-1a2b.")
    assert Grant("User:test-1a2b.tsunagu-referral", "TOPIC", "LITERAL", "test-1a2b." + INTAKE_CASES.name, "READ") \
        in referral
    assert not any(g.operation == "WRITE" and g.name.endswith(INTAKE_CASES.name) for g in referral)


def test_referral_may_read_its_own_topic_back_to_rebuild_its_reports_without_subscribing_to_it():
    referral = service_grants("referral")

    assert Grant("User:tsunagu-referral", "TOPIC", "LITERAL", REFERRALS.name, "READ") in referral
    assert "referral" not in REFERRALS.consumers, "its services' subscriptions name what they consume"


def test_only_partner_notification_may_create_partner_topics_and_manage_users():
    holders = {g.principal for g in registry_grants() if g.operation in ("CREATE", "ALTER")}
    assert holders == {"User:tsunagu-partner-notification"}


def test_a_partner_may_only_read_under_its_own_prefix_in_its_namespace():
    partner_id = UUID(int=7)
    grants = partner_grants(partner_id, "test-1a2b.")
    assert {g.operation for g in grants} == {"READ", "DESCRIBE"}
    assert {(g.resource, g.pattern, g.name) for g in grants} == {
        (kind, "PREFIXED", "test-1a2b." + PartnerDeliveries.acl_prefix(partner_id)) for kind in ("TOPIC", "GROUP")}
    assert not any(REFERRALS.name.startswith(g.name) for g in grants)
