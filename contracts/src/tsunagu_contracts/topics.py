"""The topic registry: every topic with its producers, consumers, key, partitions, retention and events.

Topics are created from this registry (`tsunagu_topics`); services and tests take topic names from
here, never from string literals. A topic's name carries the major version of its contents.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from tsunagu_contracts.events import (
    CATALOGUE, CaseClosed, CaseContactOverdue, CaseReopened, CheckInEscalated, CheckInMissed, CheckInRecorded, ConsentGranted, ConsentWithdrawn,
    ConsultationRegistered, DeliveryFailed, EstateClearanceRequested, Event, FollowUpAnswered, FollowUpDue,
    HousingSupportOpened,
    NeedIdentified, PartnerResponded, ReferralAccepted, ReferralCompleted, ReferralContactMade, ReferralDeclined,
    ReferralOverdue, ReferralRequested, ReferralRerouted, ReferralSheetOpened, StatutoryBasisEnded,
    StatutoryBasisRecorded,
    TenancyEnded, TenancyStageChanged, TenancyStarted,
)

DAY_MS = 24 * 60 * 60 * 1000
CORE_SERVICES = ("intake", "referral", "housing-support", "partner-notification")
SUBSCRIBERS_FILE = Path(__file__).with_name("subscribers.toml")


class Topic(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...] = ()
    replayed_by: tuple[str, ...] = Field(default=(), description=(
        "Services that read the topic from its start without subscribing to it (a read model's rebuild)."))
    key: str = Field(default="case_id", description="What the record key holds; order is kept per key.")
    partitions: int = Field(default=6, ge=1)
    retention_ms: int = Field(default=30 * DAY_MS, description="-1 keeps records forever.")
    events: tuple[type[Event], ...] = ()

    @property
    def config(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": "delete"}

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(e.type for e in self.events)


INTAKE_CASES = Topic(
    name="tsunagu.intake.cases.v1",
    description="Consultations at any counter, the needs found, consent and statutory bases for sharing.",
    producers=("intake",),
    consumers=("referral", "partner-notification"),
    events=(ConsultationRegistered, NeedIdentified, ConsentGranted, ConsentWithdrawn, StatutoryBasisRecorded,
            StatutoryBasisEnded),
)
REFERRALS = Topic(
    name="tsunagu.referral.referrals.v1",
    description="Referral sheets, every referral's state, overdue timers, follow-ups with the person and case closing.",
    producers=("referral",),
    consumers=("intake", "housing-support", "partner-notification"),
    # referral reads its own events back when it rebuilds its coordinators' report figures (a read model).
    replayed_by=("referral",),
    events=(ReferralSheetOpened, ReferralRequested, ReferralAccepted, ReferralDeclined, ReferralContactMade,
            ReferralCompleted, ReferralOverdue, ReferralRerouted, CaseContactOverdue, CaseClosed, CaseReopened,
            FollowUpDue, FollowUpAnswered),
)
TENANCIES = Topic(
    name="tsunagu.housing.tenancies.v1",
    description="Housing support from house-hunting through check-ins to the end of the tenancy.",
    producers=("housing-support",),
    consumers=("referral", "partner-notification"),
    events=(HousingSupportOpened, TenancyStageChanged, TenancyStarted, CheckInRecorded, CheckInMissed,
            CheckInEscalated, TenancyEnded, EstateClearanceRequested),
)
PARTNER_RESPONSES = Topic(
    name="tsunagu.partners.responses.v1",
    description="Partners' answers to referrals, and deliveries that failed for good.",
    producers=("partner-notification",),
    consumers=("referral",),
    events=(PartnerResponded, DeliveryFailed),
)


def read_subscribers(path: Path = SUBSCRIBERS_FILE) -> dict[str, tuple[str, ...]]:
    """The subscriber services of `subscribers.toml`: name → the event types it consumes.

    Read strictly: a name or an event type the registry does not know stops the import with the
    reason, so a hand edit cannot silently leave a service without its topic or its ACLs."""
    if not path.exists():
        return {}
    with path.open("rb") as f:
        tables = tomllib.load(f).get("subscribers", {})
    known = {e.type for e in CATALOGUE}
    subscribers: dict[str, tuple[str, ...]] = {}
    for name, table in tables.items():
        events = tuple(table.get("events", ()))
        unknown = sorted(set(events) - known)
        if name in CORE_SERVICES or not events or unknown:
            raise ValueError(f"{path.name}: subscriber {name!r} needs event types of the catalogue, "
                             f"a name of its own and at least one event (unknown: {unknown})")
        subscribers[name] = events
    return subscribers


SUBSCRIBERS = read_subscribers()
SERVICES: tuple[str, ...] = CORE_SERVICES + tuple(SUBSCRIBERS)


def _with_subscribers(topic: Topic) -> Topic:
    """The topic with every subscriber that consumes one of its events among its consumers."""
    extra = tuple(name for name, events in SUBSCRIBERS.items()
                  if set(events) & set(topic.event_types) and name not in topic.consumers)
    return topic.model_copy(update={"consumers": topic.consumers + extra}) if extra else topic


INTAKE_CASES, REFERRALS, TENANCIES, PARTNER_RESPONSES = map(
    _with_subscribers, (INTAKE_CASES, REFERRALS, TENANCIES, PARTNER_RESPONSES))
EVENT_TOPICS: tuple[Topic, ...] = (INTAKE_CASES, REFERRALS, TENANCIES, PARTNER_RESPONSES)


def dead_letter_topic(consumer: str) -> Topic:
    """Where a consumer puts records it could not apply after its retries, with the error."""
    return Topic(
        name=f"tsunagu.dlq.{consumer}.v1",
        description=f"Records the {consumer} service could not apply, with the error and the original record.",
        producers=(consumer,),
        consumers=("operations",),
        key="the original record's key",
        partitions=1,
        retention_ms=90 * DAY_MS,
    )


DEAD_LETTERS: tuple[Topic, ...] = tuple(dead_letter_topic(s) for s in SERVICES)

TOPICS: tuple[Topic, ...] = EVENT_TOPICS + DEAD_LETTERS
"""Every topic created at start-up. Per-partner delivery topics are created when a partner registers."""


class PartnerDeliveries:
    """One topic per partner that runs its own consumer: the events it subscribed to and may see.

    All of a partner's topics share the prefix `tsunagu.partner.<partner_id>.`, so one prefixed ACL
    fences the partner in.
    """

    ADDRESS = "tsunagu.partner.{partner_id}.deliveries.v1"
    DESCRIPTION = "Events one partner subscribed to and may see: thin CloudEvents, no personal data."
    RETENTION_MS = 14 * DAY_MS

    @staticmethod
    def acl_prefix(partner_id: UUID) -> str:
        return f"tsunagu.partner.{partner_id}."

    @classmethod
    def for_partner(cls, partner_id: UUID) -> Topic:
        return Topic(
            name=cls.ADDRESS.format(partner_id=partner_id),
            description=cls.DESCRIPTION,
            producers=("partner-notification",),
            consumers=(f"partner {partner_id}",),
            partitions=3,
            retention_ms=cls.RETENTION_MS,
            events=tuple(e for e in CATALOGUE if e.producer != "partner-notification"),
        )


def topic_for_event(event: type[Event] | Event) -> Topic:
    for topic in EVENT_TOPICS:
        if event.type in topic.event_types:
            return topic
    raise LookupError(f"no topic carries {event.type}")


def topics_consumed_by(service: str) -> tuple[Topic, ...]:
    return tuple(t for t in EVENT_TOPICS if service in t.consumers)
