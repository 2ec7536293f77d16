"""The topic registry: every topic with its producers, consumers, key, partitions and events.

Topics are created from this registry (tsunagu_topics); services and tests take topic names from
here, never from string literals.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tsunagu_contracts.events import ConsultationRegistered, Event

DAY_MS = 24 * 60 * 60 * 1000


class Topic(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...] = ()
    key: str = "case_id"
    partitions: int = Field(default=6, ge=1)
    retention_ms: int = Field(default=30 * DAY_MS, description="-1 keeps records forever.")
    events: tuple[str, ...] = ()

    @property
    def config(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms)}


INTAKE_CASES = Topic(
    name="tsunagu.intake.cases.v1",
    description="Facts about consultations at the city's counters.",
    producers=("intake",),
    consumers=("referral",),
    events=(ConsultationRegistered.type,),
)


def dead_letter_topic(consumer: str) -> Topic:
    return Topic(
        name=f"tsunagu.dlq.{consumer}.v1",
        description=f"Records the {consumer} service could not apply, with the error and the original record.",
        producers=(consumer,),
        consumers=("operations",),
        retention_ms=90 * DAY_MS,
        partitions=1,
    )


TOPICS: tuple[Topic, ...] = (
    INTAKE_CASES,
    *(dead_letter_topic(s) for s in ("referral", "housing-support", "partner-notification")),
)


def topic_for_event(event: type[Event] | Event) -> Topic:
    for topic in TOPICS:
        if event.type in topic.events:
            return topic
    raise LookupError(f"no topic carries {event.type}")
