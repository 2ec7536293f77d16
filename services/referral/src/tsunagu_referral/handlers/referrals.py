"""Opening sheets, asking recipients, and moving referrals through their states.

Every function runs inside the caller's transaction and writes its events to the outbox there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from tsunagu_contracts import (
    CaseClosed, CaseReopened, ConsultationRegistered, Envelope, NeedIdentified, Recipient, ReferralAccepted, ReferralCompleted,
    ReferralContactMade, ReferralDeclined, ReferralRequested, ReferralRerouted, ReferralSheetOpened, uuid7,
)
from tsunagu_contracts.codes import (
    CaseClosureReason, ContactMethod, DeclineReason, NeedCategory, ReferralOutcome, RerouteReason, Urgency,
)
from tsunagu_outbox import append
from tsunagu_referral.domain.deadlines import accept_deadline
from tsunagu_referral.domain.referral import ACTIVE, Action, IllegalTransition, Status, next_status
from tsunagu_referral.domain.routing import FALLBACK
from tsunagu_servicehost.errors import Refused


@dataclass(frozen=True)
class Policy:
    accept_business_days: int = 3
    contact_days: int = 14


@dataclass(frozen=True)
class Detail:
    """What an action needs besides itself: a decline reason, a contact method, an outcome, a new recipient."""

    reason: DeclineReason | None = None
    method: ContactMethod | None = None
    outcome: ReferralOutcome | None = None
    recipient: Recipient | None = None


def _recipient(raw: str | dict) -> Recipient:
    return Recipient.model_validate(json.loads(raw) if isinstance(raw, str) else raw)


async def _sheet(conn: asyncpg.Connection, case_id: UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM sheets WHERE case_id = $1{' FOR UPDATE' if lock else ''}", case_id)


async def next_candidate(conn: asyncpg.Connection, case_id: UUID, need: NeedCategory) -> tuple[int, Recipient] | None:
    """The routing table's first candidate for `need` not yet asked on this case; then the coordinator."""
    asked = {json.dumps(json.loads(r["recipient"]), sort_keys=True) for r in await conn.fetch(
        "SELECT recipient FROM referrals WHERE case_id = $1 AND need = $2", case_id, need.value)}
    routes = await conn.fetch("SELECT rank, recipient FROM routes WHERE need = $1 ORDER BY rank", need.value)
    for route in routes:
        if json.dumps(json.loads(route["recipient"]), sort_keys=True) not in asked:
            return route["rank"], _recipient(route["recipient"])
    fallback = json.dumps(FALLBACK.model_dump(mode="json", exclude_none=True), sort_keys=True)
    if fallback not in asked:
        return len(routes) + 1, FALLBACK
    return None


async def request(conn: asyncpg.Connection, sheet: asyncpg.Record, need: NeedCategory, rank: int,
                  recipient: Recipient, urgency: Urgency, *, now: datetime, policy: Policy) -> ReferralRequested:
    referral_id = uuid7()
    accept_by = accept_deadline(now, policy.accept_business_days)
    await conn.execute(
        "INSERT INTO referrals (referral_id, case_id, sheet_id, need, recipient, candidate_rank, status, urgency, "
        "accept_by, requested_at, updated_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6, 'requested', $7, $8, $9, $9)",
        referral_id, sheet["case_id"], sheet["sheet_id"], need.value, recipient.model_dump_json(exclude_none=True),
        rank, urgency.value, accept_by, now)
    return ReferralRequested(case_id=sheet["case_id"], municipality_code=sheet["municipality_code"], occurred_at=now,
                             referral_id=referral_id, recipient=recipient, sheet_id=sheet["sheet_id"], need=need,
                             urgency=urgency, accept_by=accept_by, candidate_rank=rank)


async def refer_needs(conn: asyncpg.Connection, sheet: asyncpg.Record, needs: list[NeedCategory], urgency: Urgency,
                      *, now: datetime, policy: Policy) -> list[ReferralRequested]:
    """One referral per need that has no active referral on the case yet."""
    active = {r["need"] for r in await conn.fetch(
        "SELECT need FROM referrals WHERE case_id = $1 AND status = ANY($2::text[])",
        sheet["case_id"], [s.value for s in ACTIVE])}
    events = []
    for need in needs:
        if need.value in active:
            continue
        candidate = await next_candidate(conn, sheet["case_id"], need)
        if candidate:
            events.append(await request(conn, sheet, need, *candidate, urgency, now=now, policy=policy))
    return events


async def on_consultation_registered(conn: asyncpg.Connection, envelope: Envelope[ConsultationRegistered], *,
                                     policy: Policy) -> None:
    """A consultation becomes (or joins) the case's つなぐシート, and each need is referred."""
    e = envelope.data
    now = e.occurred_at
    events: list = []
    sheet = await _sheet(conn, e.case_id, lock=True)
    if sheet is None:
        sheet = await conn.fetchrow(
            "INSERT INTO sheets (sheet_id, case_id, person_ref, municipality_code, needs, primary_need, urgency, "
            "opened_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
            uuid7(), e.case_id, e.person_ref, e.municipality_code, [n.value for n in e.needs], e.primary_need.value,
            e.urgency.value, now)
        events.append(ReferralSheetOpened(case_id=e.case_id, municipality_code=e.municipality_code, occurred_at=now,
                                          sheet_id=sheet["sheet_id"], person_ref=e.person_ref, needs=e.needs,
                                          primary_need=e.primary_need, urgency=e.urgency))
    else:
        if sheet["closed_at"] is not None:
            # Intake registered this before it heard the case was closed: the person is back, so
            # the case opens again rather than leaving the consultation with nowhere to go.
            events.append(CaseReopened(case_id=e.case_id, municipality_code=e.municipality_code, occurred_at=now,
                                       consultation_id=e.consultation_id))
        sheet = await conn.fetchrow(
            "UPDATE sheets SET needs = ARRAY(SELECT DISTINCT unnest(needs || $2::text[])), closed_at = NULL, "
            "closure_reason = NULL WHERE case_id = $1 RETURNING *", e.case_id, [n.value for n in e.needs])
    # The most pressing need is asked first.
    ordered = [e.primary_need, *[n for n in e.needs if n != e.primary_need]]
    events += await refer_needs(conn, sheet, ordered, e.urgency, now=now, policy=policy)
    await append(conn, *events)


async def on_need_identified(conn: asyncpg.Connection, envelope: Envelope[NeedIdentified], *, policy: Policy) -> None:
    e = envelope.data
    sheet = await _sheet(conn, e.case_id, lock=True)
    if sheet is None or sheet["closed_at"] is not None:
        return  # the consultation that opens the sheet comes first on the same partition
    await conn.execute("UPDATE sheets SET needs = ARRAY(SELECT DISTINCT unnest(needs || $2::text[])) "
                       "WHERE case_id = $1", e.case_id, [e.need.value])
    await append(conn, *await refer_needs(conn, sheet, [e.need], Urgency(sheet["urgency"]), now=e.occurred_at,
                                          policy=policy))


async def act(conn: asyncpg.Connection, referral_id: UUID, action: Action, detail: Detail, *, now: datetime,
              policy: Policy, recipient_must_be: Recipient | None = None) -> asyncpg.Record:
    """Apply one action to a referral; an illegal one raises `Refused` (409) and changes nothing."""
    # The sheet is locked too: actions on one case, and closing it, happen one after another, so
    # their events reach the outbox (and Kafka) in the order they were decided.
    row = await conn.fetchrow("SELECT r.*, s.municipality_code, s.closed_at FROM referrals r "
                              "JOIN sheets s USING (sheet_id) WHERE referral_id = $1 FOR UPDATE OF r, s", referral_id)
    if row is None:
        raise Refused.not_found("紹介", "referral")
    recipient = _recipient(row["recipient"])
    if recipient_must_be is not None and recipient != recipient_must_be:
        raise Refused(403, "この紹介はあなた宛てではありません。", "this referral is addressed to another recipient")
    if row["closed_at"] is not None:
        raise Refused.conflict("この相談は終了しています。", "the case is closed")
    try:
        status = next_status(Status(row["status"]), action)
    except IllegalTransition as exc:
        raise Refused.conflict(f"「{Status(row['status']).label_ja}」の紹介にはこの操作はできません。", str(exc)) from None

    base = {"case_id": row["case_id"], "municipality_code": row["municipality_code"], "occurred_at": now,
            "referral_id": referral_id, "recipient": recipient}
    events: list = []
    if action is Action.ACCEPT:
        events.append(ReferralAccepted(**base))
    elif action is Action.DECLINE:
        events.append(ReferralDeclined(**base, reason=detail.reason))
    elif action is Action.CONTACT:
        events.append(ReferralContactMade(**base, method=detail.method))
        await conn.execute("UPDATE sheets SET last_contact_at = $2 WHERE case_id = $1", row["case_id"], now)
    elif action is Action.COMPLETE:
        events.append(ReferralCompleted(**base, outcome=detail.outcome))
    await conn.execute(
        "UPDATE referrals SET status = $2, decline_reason = coalesce($3, decline_reason), "
        "contact_method = coalesce($4, contact_method), outcome = coalesce($5, outcome), updated_at = $6 "
        "WHERE referral_id = $1", referral_id, status.value, detail.reason and detail.reason.value,
        detail.method and detail.method.value, detail.outcome and detail.outcome.value, now)

    if action in (Action.DECLINE, Action.REROUTE, Action.MARK_UNREACHABLE):
        sheet = await _sheet(conn, row["case_id"])
        need = NeedCategory(row["need"])
        if action is Action.REROUTE:
            candidate = (row["candidate_rank"], detail.recipient)
            why = RerouteReason.STAFF_DECISION
        else:
            candidate = await next_candidate(conn, row["case_id"], need)
            why = RerouteReason.DECLINED if action is Action.DECLINE else RerouteReason.PARTNER_UNREACHABLE
        if candidate:
            requested = await request(conn, sheet, need, *candidate, Urgency(row["urgency"]), now=now, policy=policy)
            events += [ReferralRerouted(**base, new_referral_id=requested.referral_id,
                                        new_recipient=requested.recipient, reason=why), requested]
    await append(conn, *events)
    return await conn.fetchrow("SELECT * FROM referrals WHERE referral_id = $1", referral_id)


async def add_referral(conn: asyncpg.Connection, case_id: UUID, need: NeedCategory, recipient: Recipient | None, *,
                       now: datetime, policy: Policy) -> UUID:
    sheet = await _sheet(conn, case_id, lock=True)
    if sheet is None:
        raise Refused.not_found("つなぐシート", "referral sheet")
    if sheet["closed_at"] is not None:
        raise Refused.conflict("この相談は終了しています。", "the case is closed")
    if recipient is not None:
        ranked = await conn.fetchval("SELECT coalesce(max(candidate_rank), 0) + 1 FROM referrals "
                                     "WHERE case_id = $1 AND need = $2", case_id, need.value)
        candidate = (ranked, recipient)
    else:
        candidate = await next_candidate(conn, case_id, need)
    if candidate is None:
        raise Refused.conflict("この課題の紹介先候補はすべて依頼済みです。", "every candidate for this need was asked")
    requested = await request(conn, sheet, need, *candidate, Urgency(sheet["urgency"]), now=now, policy=policy)
    await append(conn, requested)
    return requested.referral_id


async def close_case(conn: asyncpg.Connection, case_id: UUID, reason: CaseClosureReason, *, now: datetime) -> None:
    sheet = await _sheet(conn, case_id, lock=True)
    if sheet is None:
        raise Refused.not_found("つなぐシート", "referral sheet")
    if sheet["closed_at"] is not None:
        raise Refused.conflict("この相談はすでに終了しています。", "the case is already closed")
    await conn.execute("UPDATE sheets SET closed_at = $2, closure_reason = $3 WHERE case_id = $1",
                       case_id, now, reason.value)
    await append(conn, CaseClosed(case_id=case_id, municipality_code=sheet["municipality_code"], occurred_at=now,
                                  reason=reason))
