"""Keeps intake's view of each case's referrals, from the referral service's events."""

from __future__ import annotations

import asyncpg

from tsunagu_contracts import (
    CaseClosed, CaseReopened, Envelope, ReferralAccepted, ReferralCompleted, ReferralContactMade, ReferralDeclined,
    ReferralOverdue, ReferralRequested, ReferralRerouted,
)

STATUS = {ReferralAccepted: "accepted", ReferralDeclined: "declined", ReferralContactMade: "contact_made",
          ReferralCompleted: "completed", ReferralRerouted: "rerouted"}


async def on_referral_requested(conn: asyncpg.Connection, envelope: Envelope[ReferralRequested]) -> None:
    e = envelope.data
    await conn.execute(
        "INSERT INTO case_referrals (referral_id, case_id, need, recipient, status, updated_at) "
        "VALUES ($1, $2, $3, $4::jsonb, 'requested', $5) ON CONFLICT (referral_id) DO NOTHING",
        e.referral_id, e.case_id, e.need.value, e.recipient.model_dump_json(exclude_none=True), e.occurred_at)


async def on_referral_changed(conn: asyncpg.Connection, envelope: Envelope) -> None:
    e = envelope.data
    # A decline is followed by a reroute of the same referral: the referral stays "declined".
    await conn.execute("UPDATE case_referrals SET status = $2, updated_at = $3 WHERE referral_id = $1 "
                       "AND NOT (status = 'declined' AND $2 = 'rerouted')", e.referral_id, STATUS[type(e)],
                       e.occurred_at)


async def on_referral_overdue(conn: asyncpg.Connection, envelope: Envelope[ReferralOverdue]) -> None:
    await conn.execute("UPDATE case_referrals SET overdue = true WHERE referral_id = $1", envelope.data.referral_id)


async def on_case_closed(conn: asyncpg.Connection, envelope: Envelope[CaseClosed]) -> None:
    e = envelope.data
    await conn.execute("UPDATE cases SET closed_at = $2, closure_reason = $3 WHERE case_id = $1 AND closed_at IS NULL",
                       e.case_id, e.occurred_at, e.reason.value)


async def on_case_reopened(conn: asyncpg.Connection, envelope: Envelope[CaseReopened]) -> None:
    await conn.execute("UPDATE cases SET closed_at = NULL, closure_reason = NULL WHERE case_id = $1",
                       envelope.data.case_id)


HANDLERS = {
    ReferralRequested: on_referral_requested,
    **{event: on_referral_changed for event in STATUS},
    ReferralOverdue: on_referral_overdue,
    CaseClosed: on_case_closed,
    CaseReopened: on_case_reopened,
}
