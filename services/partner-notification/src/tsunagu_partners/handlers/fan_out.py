"""From the city's events to each partner's deliveries: only what it subscribed to and may see.

A partner may see a case while it holds the person's consent, or a recorded statutory basis
(支援会議). Consent withdrawn stops everything at once, and the partner is told.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from tsunagu_contracts import (
    CaseClosed, CaseReopened, ConsentGranted, ConsentWithdrawn, ConsultationRegistered, Envelope, Event,
    NeedIdentified, ReferralRequested,
    StatutoryBasisEnded, StatutoryBasisRecorded, decode, encode, uuid7,
)
from tsunagu_contracts.codes import DeliveryChannel, RecipientKind
from tsunagu_contracts.events.referral import ReferralEvent
from tsunagu_contracts.japan import japan_date
from tsunagu_partners.domain.answers import CLOSED
from tsunagu_partners.domain.mail import mailed_referral
from tsunagu_partners.domain.routing import Wants, permits, purposes_for
from tsunagu_partners.domain.webhooks import cloudevent_body
from tsunagu_partners.handlers.access import ACTIVE
from tsunagu_partners.handlers.held import case_locked
from tsunagu_partners.handlers.referral_status import follow_referral


async def referral_need(uow, event: Event) -> str | None:
    """The need a referral event is about: its own when it says, else its referral's as requested."""
    if isinstance(event, ReferralRequested):
        return event.need.value
    if isinstance(event, ReferralEvent):
        return await uow.repo.referrals.need_of(event.referral_id)
    return None


async def partners_who_may_see(uow, case_id, today: date, event: Event,
                               need: str | None = None) -> list[Any]:
    """Partners holding a valid consent or statutory basis for the case, for a purpose the event serves
    (for a referral event, one its referral's `need` serves)."""
    # Under a share lock on each partner's row, so a deactivation cannot slip between this read and
    # the deliveries queued from it (adapters/registry.py).
    rows = await uow.repo.permissions.partners_allowed(case_id, today)
    return [r for r in rows if permits(event, frozenset(r["consented"] or ()), statutory=r["statutory"], need=need)]


async def deliver(uow, partner, envelope: Envelope, need: str | None = None) -> None:
    """Queue one event for one partner, once: a redelivered event finds its delivery already there.

    The delivery keeps the consent purposes the event needs (for a referral's event, those its
    `need` serves), so that a withdrawal leaves it pending only while a consent for one remains."""
    e = envelope.data
    if partner["webhook_url"]:
        await uow.repo.deliveries.queue(uuid7(), partner["partner_id"], envelope.id, e.type, e.case_id,
                                        cloudevent_body(envelope), _values(purposes_for(e, need)))
    elif not partner["kafka_topic"]:
        # A partner with neither a webhook nor a topic of its own is mailed a notice of each referral
        # addressed to it (domain/mail.py), queued here like a webhook: sent once the fan-out commits.
        body = cloudevent_body(envelope)
        referral_id = mailed_referral(body, partner["partner_id"])
        if referral_id is not None:
            await uow.repo.deliveries.queue(uuid7(), partner["partner_id"], envelope.id, e.type, e.case_id, body,
                                            _values(purposes_for(e, need)), channel=DeliveryChannel.EMAIL.value,
                                            referral_id=referral_id)
    if partner["kafka_topic"]:
        if not await uow.repo.deliveries.published(envelope.id, partner["kafka_topic"]):
            uow.forward(e, topic=partner["kafka_topic"], source=envelope.source, event_id=envelope.id)


def _values(purposes) -> list[str] | None:
    return None if purposes is None else sorted(p.value for p in purposes)


def addressed_elsewhere(event: Event, partner_id) -> bool:
    """An addressed event (a referral, a missed check-in, an estate clearance) is news only to the
    partner it is addressed to, never to others."""
    recipients = event.addressees()
    return bool(recipients) and all(r.partner_id != partner_id for r in recipients)


async def hold_if_addressed_without_permission(uow, envelope: Envelope, allowed: set,
                                                need: str | None = None) -> None:
    """Consent arrives on intake's topic, referrals on referral's: read by separate consumers, a
    referral addressed to a partner can come first. It is held, and delivered when the consent is,
    a consent for one of the purposes it needs (kept with it for the sweep)."""
    e = envelope.data
    purposes = _values(purposes_for(e, need))
    waiting = [r.partner_id for r in e.addressees() if r.partner_id is not None and r.partner_id not in allowed]
    # Nothing is held for a deactivated partner: it would never be released.
    active = await uow.repo.registry.lock_receiving(waiting) if waiting else set()
    for recipient in e.addressees():
        if recipient.partner_id in active:
            record = encode(e, source=envelope.source, event_id=envelope.id)
            await uow.repo.held.hold(e.case_id, recipient.partner_id, envelope.id,
                                     json.dumps({k: v.decode() for k, v in record.headers}), record.value, purposes)


async def release_held(uow, case_id, partner_id) -> int:
    """Fan out again what was held for the partner; returns how many events were taken out."""
    # Under the case's lock (adapters/held_events.py): no held row of the case is uncommitted elsewhere.
    rows = await uow.repo.held.take(case_id, partner_id)
    for row in rows:
        await fan_out(uow, decode(json.loads(row["headers"]), bytes(row["value"])))
    return len(rows)


@case_locked
async def fan_out(uow, envelope: Envelope) -> None:
    e: Event = envelope.data
    await follow_referral(uow, e)
    need = await referral_need(uow, e)
    partners = await partners_who_may_see(uow, e.case_id, japan_date(e.occurred_at), e, need)
    await hold_if_addressed_without_permission(uow, envelope, {p["partner_id"] for p in partners}, need)
    for partner in partners:
        if addressed_elsewhere(e, partner["partner_id"]):
            continue
        wants = Wants(frozenset(partner["event_types"]), frozenset(partner["need_categories"]),
                      frozenset(partner["areas"]))
        if wants.matches(e, frozenset(partner["case_needs"] or ())):
            await deliver(uow, partner, envelope, need)


@case_locked
async def on_consultation(uow, envelope: Envelope[ConsultationRegistered]) -> None:
    e = envelope.data
    await uow.repo.permissions.remember_needs(e.case_id, e.person_ref, [n.value for n in e.needs])
    await fan_out(uow, envelope)


@case_locked
async def on_need(uow, envelope: Envelope[NeedIdentified]) -> None:
    await uow.repo.permissions.add_need(envelope.data.case_id, envelope.data.need.value)
    await fan_out(uow, envelope)


@case_locked
async def on_consent_granted(uow, envelope: Envelope[ConsentGranted]) -> None:
    e = envelope.data
    if e.recipient.kind is RecipientKind.PARTNER:
        await uow.repo.permissions.grant(e.consent_id, e.case_id, e.recipient.partner_id, e.person_ref, "consent",
                                         e.purpose.value, e.valid_until)
        await release_held(uow, e.case_id, e.recipient.partner_id)


@case_locked
async def on_basis_recorded(uow, envelope: Envelope[StatutoryBasisRecorded]) -> None:
    e = envelope.data
    if e.recipient.kind is RecipientKind.PARTNER:
        await uow.repo.permissions.grant(e.basis_id, e.case_id, e.recipient.partner_id, e.person_ref, e.basis.value,
                                         e.purpose.value, e.valid_until)
        await release_held(uow, e.case_id, e.recipient.partner_id)


@case_locked
async def on_consent_withdrawn(uow, envelope: Envelope[ConsentWithdrawn]) -> None:
    """Stop at once, and tell the partner: the withdrawal is the last thing it hears of the case."""
    await end_permission(uow, envelope, envelope.data.consent_id)


@case_locked
async def on_basis_ended(uow, envelope: Envelope[StatutoryBasisEnded]) -> None:
    """A 支援会議 decision ended for this member: as a withdrawal, what it alone allowed stops."""
    await end_permission(uow, envelope, envelope.data.basis_id)


async def end_permission(uow, envelope: Envelope, grant_id) -> None:
    """Revoke the grant, tell the partner, and take back what was not yet sent unless what remains
    still reaches it."""
    e = envelope.data
    if e.recipient.kind is not RecipientKind.PARTNER:
        return
    permissions = uow.repo.permissions
    await permissions.revoke(grant_id, e.occurred_at)
    # Share-locked as in the fan-out: a deactivation does not slip in before the notice is queued.
    active = await uow.repo.registry.lock_receiving([e.recipient.partner_id])
    partner = await uow.repo.registry.receiving(e.recipient.partner_id) if active else None
    if partner is not None:
        await deliver(uow, partner, envelope)
    consented, statutory = await permissions.remaining(e.case_id, e.recipient.partner_id, japan_date(e.occurred_at))
    if not statutory:
        # Deliveries not yet made are withdrawn with the consent, unless a consent that remains is
        # for a purpose they need (one for any purpose, when they need none in particular).
        await uow.repo.deliveries.withdraw_unsent(e.case_id, e.recipient.partner_id, envelope.id, consented)
        if partner is not None and partner["kafka_topic"]:
            await withdraw_unpublished_forwards(uow, e.case_id, partner["kafka_topic"], envelope.id, consented)


async def withdraw_unpublished_forwards(uow, case_id, topic: str, except_event_id, consented: list[str]) -> None:
    """What was forwarded to the partner's own topic and is not yet published goes with the consent,
    by the same rule as its webhook deliveries."""
    dropped = []
    for row in await uow.repo.deliveries.unpublished_forwards(case_id, topic):
        if row["event_id"] == except_event_id:
            continue
        event = decode(json.loads(row["headers"]), bytes(row["value"])).data
        need = await referral_need(uow, event)
        if not (consented and permits(event, frozenset(consented), statutory=False, need=need)):
            dropped.append(row["id"])
    if dropped:
        await uow.repo.deliveries.drop_forwards(dropped)


@case_locked
async def on_referral_requested(uow, envelope: Envelope[ReferralRequested]) -> None:
    e = envelope.data
    if e.recipient.kind is RecipientKind.PARTNER:
        await uow.repo.referrals.open(e.referral_id, e.case_id, e.recipient.partner_id, e.municipality_code,
                                      e.need.value, e.occurred_at)
    await fan_out(uow, envelope)


@case_locked
async def on_case_closed(uow, envelope: Envelope[CaseClosed]) -> None:
    """A closed case ends what its partners may do: no answers, no more of the person's details.

    Each active referral keeps the status it had, for the case's reopening. The referral service
    changes no referral of a closed case, so nothing else moves a closed one meanwhile.
    """
    await uow.repo.referrals.close_case(envelope.data.case_id, CLOSED, list(ACTIVE))
    await fan_out(uow, envelope)


@case_locked
async def on_case_reopened(uow, envelope: Envelope[CaseReopened]) -> None:
    """The person came back: the referral service takes up the case's referrals where they were, so do we."""
    await uow.repo.referrals.reopen_case(envelope.data.case_id, CLOSED)
    await fan_out(uow, envelope)


__all__ = ["fan_out", "on_basis_recorded", "on_case_closed", "on_case_reopened", "on_consent_granted",
           "on_consent_withdrawn", "on_basis_ended", "on_consultation", "on_need", "on_referral_requested"]
