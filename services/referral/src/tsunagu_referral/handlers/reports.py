"""The report read model: events projected into its tables, and the three reports read from them.

The projection keeps its own applied-event records (consumer `referral-reports`), so it can be
rebuilt from the log without touching a referral. Each event is projected in the transaction that
makes or applies it: referral's own events as they are appended to the outbox, intake's and
partners' as the service's consumers apply them. Times are the events' own `occurred_at`, never the
time of applying, so a rebuilt report equals the live one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg

from tsunagu_contracts import (
    INTAKE_CASES, PARTNER_RESPONSES, REFERRALS, CaseClosed, ConsultationRegistered, DeliveryFailed, Envelope, Event,
    FollowUpAnswered, NeedIdentified, Recipient, ReferralAccepted, ReferralCompleted, ReferralDeclined,
    ReferralOverdue, ReferralRequested, ReferralRerouted, Topic,
)
from tsunagu_contracts.codes import Division, NeedCategory, RecipientKind
from tsunagu_referral.adapters.reports import ReportsStore
from tsunagu_referral.domain.reports import (
    CITY_NEEDS_PER_PERSON, Period, by_reason, by_reason_and_need, hours, median, needs_per_person, percentile, share,
)

def recipient_key(recipient: Recipient) -> tuple[str, str]:
    """(kind, division code or partner id): how the read model names a recipient, no name in it."""
    if recipient.kind is RecipientKind.DIVISION:
        return recipient.kind.value, recipient.division.value
    return recipient.kind.value, str(recipient.partner_id)


# the projection --------------------------------------------------------------------------------

async def consultation_registered(store: ReportsStore, e: ConsultationRegistered, event_id: UUID) -> None:
    await store.add_consultation(e.consultation_id, e.case_id, e.person_ref, e.occurred_at)
    await store.add_needs(e.case_id, [n.value for n in e.needs], e.occurred_at)


async def need_identified(store: ReportsStore, e: NeedIdentified, event_id: UUID) -> None:
    await store.add_needs(e.case_id, [e.need.value], e.occurred_at)


async def referral_requested(store: ReportsStore, e: ReferralRequested, event_id: UUID) -> None:
    await store.record_referral(e.referral_id, e.case_id, recipient_key(e.recipient), need=e.need.value,
                                requested_at=e.occurred_at)


async def referral_accepted(store: ReportsStore, e: ReferralAccepted, event_id: UUID) -> None:
    await store.record_referral(e.referral_id, e.case_id, recipient_key(e.recipient), accepted_at=e.occurred_at,
                                first_answer_at=e.occurred_at)


async def referral_declined(store: ReportsStore, e: ReferralDeclined, event_id: UUID) -> None:
    await store.record_referral(e.referral_id, e.case_id, recipient_key(e.recipient), declined_at=e.occurred_at,
                                decline_reason=e.reason.value, first_answer_at=e.occurred_at)


async def referral_overdue(store: ReportsStore, e: ReferralOverdue, event_id: UUID) -> None:
    await store.record_referral(e.referral_id, e.case_id, recipient_key(e.recipient), overdue_at=e.occurred_at)


async def referral_rerouted(store: ReportsStore, e: ReferralRerouted, event_id: UUID) -> None:
    await store.record_referral(e.referral_id, e.case_id, recipient_key(e.recipient), rerouted_at=e.occurred_at,
                                reroute_reason=e.reason.value)


async def referral_completed(store: ReportsStore, e: ReferralCompleted, event_id: UUID) -> None:
    await store.record_referral(e.referral_id, e.case_id, recipient_key(e.recipient), completed_at=e.occurred_at,
                                outcome=e.outcome.value)


async def case_closed(store: ReportsStore, e: CaseClosed, event_id: UUID) -> None:
    await store.add_closure(event_id, e.case_id, e.occurred_at, e.reason.value)


async def delivery_failed(store: ReportsStore, e: DeliveryFailed, event_id: UUID) -> None:
    await store.add_delivery_failure(e.delivery_id, e.partner_id, e.referral_id, e.occurred_at)


async def follow_up_answered(store: ReportsStore, e: FollowUpAnswered, event_id: UUID) -> None:
    await store.add_follow_up_answer(e.follow_up_id, e.case_id, e.referral_id, e.need.value, e.outcome.value,
                                     e.occurred_at)


Projection = Callable[[ReportsStore, Any, UUID], Awaitable[None]]
"""Applies one event (its data, its id) to the read model."""

PROJECTIONS: dict[Topic, dict[type[Event], Projection]] = {
    INTAKE_CASES: {ConsultationRegistered: consultation_registered, NeedIdentified: need_identified},
    REFERRALS: {ReferralRequested: referral_requested, ReferralAccepted: referral_accepted,
                ReferralDeclined: referral_declined, ReferralOverdue: referral_overdue,
                ReferralRerouted: referral_rerouted, ReferralCompleted: referral_completed, CaseClosed: case_closed,
                FollowUpAnswered: follow_up_answered},
    PARTNER_RESPONSES: {DeliveryFailed: delivery_failed},
}
"""What the read model is built from, by topic: the same for the live projection and the rebuild."""

OWN: Topic = REFERRALS
"""Referral's own topic: its events are projected in the transaction that appends them to the outbox
(`project_appended`). The events of every other topic in `PROJECTIONS` are projected by the service's
consumer of that topic, in the transaction that applies them (`projecting`). Either way the event is
recorded as applied under the projection's own name, so that a rebuild running meanwhile applies
it once with the service; no consumer reads an event again only to project it."""


async def project(conn: asyncpg.Connection, events: list[tuple[Envelope, Projection]], *, writes: Any = None
                  ) -> int:
    """Apply `events` (each with its projection) to the read model in the caller's transaction, except
    those it applied already; how many it applied. `writes`: where the projections' statements go,
    the connection by default (the rebuild gathers them, to send each once for its whole batch).

    Exactly once between the live projection and the rebuild: both record each event id in
    `applied_events` in the transaction of its effect, and the primary key makes the second of two
    writers wait for the first and find its row. The ids are inserted in one order (sorted), so two
    writers never wait on each other's ids in a circle; RETURNING names the ids applied now."""
    if not events:
        return 0
    store = ReportsStore(conn)
    await store.hold_off_rebuild()
    new = set(await store.mark_all_applied([envelope.id for envelope, _ in events]))
    written = ReportsStore(writes) if writes is not None else store
    applied = 0
    for envelope, projection in events:
        if envelope.id in new:
            new.discard(envelope.id)  # a second copy in the batch is a duplicate
            await projection(written, envelope.data, envelope.id)
            applied += 1
    return applied


def with_projection(envelopes: list[Envelope], projections: dict[type[Event], Projection]
                    ) -> list[tuple[Envelope, Projection]]:
    """Those of `envelopes` the read model is built from, each with its projection."""
    return [(envelope, projections[type(envelope.data)]) for envelope in envelopes
            if type(envelope.data) in projections]


def projecting(topic: Topic) -> Callable[[asyncpg.Connection, Envelope], Awaitable[None]]:
    """A consumer's `(conn, envelope)` handler that projects an event of `topic`, in the transaction
    that applies it."""
    async def apply(conn: asyncpg.Connection, envelope: Envelope) -> None:
        await project(conn, with_projection([envelope], PROJECTIONS[topic]))
    return apply


async def project_appended(conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
    """The outbox's `on_append` for every unit of work of the service: its own events, projected."""
    await project(conn, with_projection(envelopes, PROJECTIONS[OWN]))


# the reports -----------------------------------------------------------------------------------

def period_view(period: Period) -> dict:
    return {"from": period.first.isoformat() if period.first else None,
            "to": period.last.isoformat() if period.last else None}


def recipient_view(kind: str, recipient: str) -> dict:
    if kind == RecipientKind.DIVISION.value:
        return {"kind": kind, "division": recipient, "label_ja": Division(recipient).label_ja}
    return {"kind": kind, "partner_id": recipient, "label_ja": RecipientKind.PARTNER.label_ja}


async def summary(store: ReportsStore, period: Period) -> dict:
    people = await store.consultations(period)
    requested = await store.referrals_requested(period)
    to_acceptance = await store.seconds_to_acceptance(period)
    completions = await store.completions(period)
    by_need: dict[str, int] = {}
    by_recipient: dict[tuple[str, str], int] = {}
    for row in requested:
        if row["need"] is not None:
            by_need[row["need"]] = by_need.get(row["need"], 0) + row["referrals"]
        key = (row["recipient_kind"], row["recipient"])
        by_recipient[key] = by_recipient.get(key, 0) + row["referrals"]
    return {
        "period": period_view(period),
        "consultations": people["consultations"],
        "people": people["people"],
        "needs_per_person": needs_per_person(await store.needs_of_people(period)),
        "needs_per_person_city_reference": CITY_NEEDS_PER_PERSON,
        "referrals": sum(by_recipient.values()),
        "referrals_by_need": [{"need": need, "need_label_ja": NeedCategory(need).label_ja, "referrals": n}
                              for need, n in sorted(by_need.items(), key=lambda item: (-item[1], item[0]))],
        "referrals_by_recipient": [{**recipient_view(*key), "referrals": n}
                                   for key, n in sorted(by_recipient.items(), key=lambda item: (-item[1], item[0]))],
        "time_to_acceptance": durations(to_acceptance),
        "completed": {"completed": completions["completed"], "supported": completions["supported"],
                      "supported_share": share(completions["supported"], completions["completed"])},
        "follow_ups": await follow_ups(store, period),
        "cases_closed": await store.cases_closed(period),
    }


def durations(seconds: list[float]) -> dict:
    """Median and 90th percentile in hours for people, in seconds (to a tenth) for exact comparisons."""
    middle, high = median(seconds), percentile(seconds, 0.9)
    return {"accepted": len(seconds), "median_hours": hours(middle), "p90_hours": hours(high),
            "median_seconds": None if middle is None else round(middle, 1),
            "p90_seconds": None if high is None else round(high, 1)}


async def follow_ups(store: ReportsStore, period: Period) -> dict:
    """Follow-ups answered in the period, and those the person said the help reached and helped."""
    answers = await store.follow_up_answers(period)
    return {"answered": answers["answered"], "helped": answers["helped"],
            "helped_share": share(answers["helped"], answers["answered"])}


async def partners(store: ReportsStore, period: Period) -> dict:
    reasons: dict[tuple[str, str], dict[str, int]] = {}
    for row in await store.decline_reasons(period):
        reasons.setdefault((row["recipient_kind"], row["recipient"]), {})[row["decline_reason"]] = row["declined"]
    failed = await store.delivery_failures(period)
    rows = {(r["recipient_kind"], r["recipient"]): r for r in await store.recipients(period)}
    keys = set(rows) | {(RecipientKind.PARTNER.value, str(p)) for p in failed}
    recipients = []
    for key in sorted(keys):
        row = rows.get(key)
        received = row["received"] if row else 0
        accepted = row["accepted"] if row else 0
        recipients.append({
            **recipient_view(*key),
            "referrals_received": received,
            "accepted": accepted,
            "declined": row["declined"] if row else 0,
            "acceptance_rate": share(accepted, received),
            "median_hours_to_first_answer": hours(median(row["seconds_to_first_answer"] if row else [])),
            "decline_reasons": dict(sorted(reasons.get(key, {}).items())),
            "overdue": row["overdue"] if row else 0,
            "deliveries_failed": failed.get(_partner_id(key), 0),
        })
    return {"period": period_view(period), "recipients": recipients}


def _partner_id(key: tuple[str, str]) -> UUID | None:
    return UUID(key[1]) if key[0] == RecipientKind.PARTNER.value else None


async def declines(store: ReportsStore, period: Period) -> dict:
    failures = await store.failures(period)
    return {"period": period_view(period), "failures": len(failures), "by_reason": by_reason(failures),
            "by_reason_and_need": by_reason_and_need(failures)}
