"""Every SQL statement of the referral service, and the unit of work around one asyncpg transaction.

Concurrency rules, stated once here and beside each statement that needs one. Three consumers
(intake cases, partner responses, tenancies), the HTTP API and the timers of every instance write
these tables at once:

- A sheet's row lock (`sheet(..., lock=True)`) serialises everything that changes one case: a
  consultation or need from intake, a referral added by hand, closing the case, and every action
  on one of its referrals. Their events therefore reach the outbox, and Kafka, in the order they
  were decided. Take it first, or together with the referral (next rule).
- An action on a referral (`referral_for_action`) locks the referral and its sheet in one statement,
  FOR UPDATE OF r, s. A partner's answer, a housing move, an undelivered notice and a staff click
  on the same referral queue there; the later one reads the status the earlier one left and is
  refused when it no longer fits. A reroute or a decline asks the next candidate under that same
  sheet lock, so two of them never pick the same candidate or the same rank.
- New referrals are only inserted under the sheet's lock; the rows read to choose the next
  candidate (`asked`, `active_needs`, `next_rank`) are not locked, because that lock already keeps
  every writer of the case's referrals out.
- The routing table is replaced in one transaction (`set_routes`); a candidate chosen meanwhile
  reads the table before or after the change, never half of it. Routes are not locked: a choice
  made just before a change is not undone by it.
- The timers never wait. The acceptance timer locks referrals alone with SKIP LOCKED (a referral an
  action holds is looked at on the next round, when its status may no longer be 'requested'); it
  reads, and does not lock, the sheet, so a case closed in the same instant may still raise one
  last ReferralOverdue. The contact timer locks sheets with SKIP LOCKED: a case being acted on is
  checked on the next round.
- Permissions (the consents and statutory-basis grants partners hold) have a single writer, the
  intake consumer, one record at a time per case; a grant is inserted once (ON CONFLICT DO NOTHING
  on its id) and ended once. The referrals an ending withdraws are read unlocked, and each is
  withdrawn by an action (`referral_for_action`: the referral, then its sheet), so it queues with a
  partner's answer to the same referral and finds it as that answer left it. Taking the sheet
  first here would invert that order and deadlock with the answer.
- Follow-ups: an action that accepts or completes a referral (holding the referral and the sheet)
  schedules its follow-up with an upsert on `referral_id`, which changes a follow-up only while
  it is scheduled. The follow-up timer locks follow-ups alone, SKIP LOCKED, and never waits: a
  follow-up an action holds opens on the next round. An answer takes the sheet's lock and then the
  follow-up's (`follow_up(..., lock=True)`): of two answers at once the second waits and finds the
  first, and a need reopened by an answer is inserted under the sheet's lock like every referral.
  Every path takes the sheet before the follow-up, so none waits for another in a circle.
- A sheet is opened once per case: the intake consumer is the only opener and handles a case's
  events one after another (one partition per case); `sheets.case_id` is unique in case it ever is not.
"""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from uuid import UUID

import asyncpg

from tsunagu_contracts import Recipient
from tsunagu_contracts.codes import (
    CaseClosureReason, ConsentPurpose, Division, FollowUpOutcome, NeedCategory, Urgency,
)
from tsunagu_outbox import OnAppend, UnitOfWork
from tsunagu_outbox import unit_of_work as outbox_unit_of_work
from tsunagu_referral.domain.model import Detail, FollowUp, Referral, Sheet, Silence
from tsunagu_referral.domain.referral import ACTIVE, Status

LOCK = " FOR UPDATE"
"""A sheet's row lock: the one order in which a case's changes happen."""


def _recipient(raw: str | dict) -> Recipient:
    return Recipient.model_validate(json.loads(raw) if isinstance(raw, str) else raw)


def _sheet(row: asyncpg.Record) -> Sheet:
    return Sheet(row["sheet_id"], row["case_id"], row["person_ref"], row["municipality_code"], list(row["needs"]),
                 NeedCategory(row["primary_need"]), Urgency(row["urgency"]), row["opened_at"], row["closed_at"],
                 CaseClosureReason(row["closure_reason"]) if row["closure_reason"] else None,
                 row["last_contact_at"], Division(row["counter"]) if row["counter"] else None)


def _referral(row: asyncpg.Record) -> Referral:
    return Referral(row["referral_id"], row["case_id"], row["sheet_id"], NeedCategory(row["need"]),
                    _recipient(row["recipient"]), row["candidate_rank"], Status(row["status"]),
                    Urgency(row["urgency"]), row["accept_by"], row["requested_at"], row["updated_at"],
                    row["overdue_at"], row["decline_reason"], row["contact_method"], row["outcome"])


def _follow_up(row: asyncpg.Record) -> FollowUp:
    return FollowUp(row["follow_up_id"], row["referral_id"], row["case_id"], NeedCategory(row["need"]),
                    Division(row["counter"]), row["due_on"], row["answer_by"], row["opened_at"],
                    FollowUpOutcome(row["outcome"]) if row["outcome"] else None, row["answered_at"],
                    row["reopened_referral_id"])


class Repository:
    """The referral tables, read and written inside the caller's transaction (or none, for reads)."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    # sheets -----------------------------------------------------------------------------------

    async def sheet(self, case_id: UUID, *, lock: bool = False) -> Sheet | None:
        # lock=True: the sheet's row lock serialises every change to the case (rule at the top).
        row = await self.conn.fetchrow(f"SELECT * FROM sheets WHERE case_id = $1{LOCK if lock else ''}", case_id)
        return _sheet(row) if row else None

    async def lock_sheets(self, case_ids: list[UUID]) -> None:
        """The sheet locks of several cases at once, in case order: a consumer's batch takes them
        before its events are applied, so that two batches (or a batch and an action) never wait on
        each other in a circle. A case without a sheet yet has nothing to lock."""
        await self.conn.execute(f"SELECT 1 FROM sheets WHERE case_id = ANY($1::uuid[]) ORDER BY case_id{LOCK}",
                                sorted(set(case_ids)))

    async def open_sheet(self, sheet: Sheet) -> Sheet:
        row = await self.conn.fetchrow(
            "INSERT INTO sheets (sheet_id, case_id, person_ref, municipality_code, needs, primary_need, urgency, "
            "opened_at, counter) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
            sheet.sheet_id, sheet.case_id, sheet.person_ref, sheet.municipality_code, sheet.needs,
            sheet.primary_need.value, sheet.urgency.value, sheet.opened_at, sheet.counter and sheet.counter.value)
        return _sheet(row)

    async def add_needs(self, case_id: UUID, needs: list[NeedCategory], *, reopen: bool = False) -> Sheet:
        """Add needs to a sheet the caller holds locked; `reopen` also opens a closed case again."""
        reopening = ", closed_at = NULL, closure_reason = NULL" if reopen else ""
        row = await self.conn.fetchrow(
            f"UPDATE sheets SET needs = ARRAY(SELECT DISTINCT unnest(needs || $2::text[])){reopening} "
            "WHERE case_id = $1 RETURNING *", case_id, [n.value for n in needs])
        return _sheet(row)

    async def close_sheet(self, case_id: UUID, reason: CaseClosureReason, *, at: datetime) -> None:
        await self.conn.execute("UPDATE sheets SET closed_at = $2, closure_reason = $3 WHERE case_id = $1",
                                case_id, at, reason.value)

    async def record_contact(self, case_id: UUID, at: datetime, *, keep_later: bool = False) -> None:
        """The case was reached at `at`; with `keep_later`, a report older than the last contact leaves it.

        Takes the sheet's lock if the caller does not hold it yet: a caller that also acts on a
        referral acts first, so the referral is locked before the sheet, as in every action."""
        latest = "greatest(last_contact_at, $2)" if keep_later else "$2"
        await self.conn.execute(f"UPDATE sheets SET last_contact_at = {latest} WHERE case_id = $1", case_id, at)

    async def silent_sheets(self, horizon: datetime, limit: int) -> list[Silence]:
        """Open cases silent since before `horizon` and not reported since, for the contact timer.
        SKIP LOCKED: a case being acted on is checked on the next round (rule at the top)."""
        rows = await self.conn.fetch(
            "SELECT case_id, municipality_code, last_contact_at, coalesce(last_contact_at, opened_at) AS silent_since "
            "FROM sheets WHERE closed_at IS NULL AND coalesce(last_contact_at, opened_at) < $1 "
            "AND (contact_overdue_at IS NULL OR contact_overdue_at < greatest(coalesce(last_contact_at, opened_at), $1)) "
            "ORDER BY silent_since LIMIT $2 FOR UPDATE SKIP LOCKED", horizon, limit)
        return [Silence(r["case_id"], r["municipality_code"], r["last_contact_at"], r["silent_since"]) for r in rows]

    async def mark_contact_overdue(self, case_ids: list[UUID], at: datetime) -> None:
        await self.conn.execute("UPDATE sheets SET contact_overdue_at = $2 WHERE case_id = ANY($1::uuid[])",
                                case_ids, at)

    # referrals --------------------------------------------------------------------------------

    async def referral(self, referral_id: UUID) -> Referral | None:
        row = await self.conn.fetchrow("SELECT * FROM referrals WHERE referral_id = $1", referral_id)
        return _referral(row) if row else None

    async def referral_for_action(self, referral_id: UUID) -> tuple[Referral, Sheet] | None:
        """The referral and its sheet, both locked, for one action (rule at the top)."""
        row = await self.conn.fetchrow(
            "SELECT r.referral_id FROM referrals r JOIN sheets s USING (sheet_id) WHERE referral_id = $1 "
            "FOR UPDATE OF r, s", referral_id)
        if row is None:
            return None
        referral = await self.referral(referral_id)
        return referral, await self.sheet(referral.case_id)

    async def referrals_of_case(self, case_id: UUID) -> list[Referral]:
        rows = await self.conn.fetch("SELECT * FROM referrals WHERE case_id = $1 ORDER BY requested_at", case_id)
        return [_referral(r) for r in rows]

    async def queue(self, status: Status | None, limit: int) -> list[Referral]:
        """Unreachable and withdrawn first (someone should call the partner, or the need left it),
        then overdue, then by deadline: the same order as the referrals_queue index (0005)."""
        rows = await self.conn.fetch(
            "SELECT * FROM referrals WHERE ($1::text IS NULL OR status = $1) "
            "ORDER BY (status IN ('unreachable', 'withdrawn')) DESC, (overdue_at IS NOT NULL) DESC, accept_by, "
            "requested_at "
            "LIMIT $2", status.value if status else None, limit)
        return [_referral(r) for r in rows]

    async def latest_active(self, case_id: UUID, need: NeedCategory) -> Referral | None:
        """The case's referral for `need` still under way (the latest, after any reroute)."""
        row = await self.conn.fetchrow(
            "SELECT * FROM referrals WHERE case_id = $1 AND need = $2 AND status = ANY($3::text[]) "
            "ORDER BY requested_at DESC LIMIT 1", case_id, need.value, [s.value for s in ACTIVE])
        return _referral(row) if row else None

    async def active_needs(self, case_id: UUID) -> set[NeedCategory]:
        rows = await self.conn.fetch("SELECT need FROM referrals WHERE case_id = $1 AND status = ANY($2::text[])",
                                     case_id, [s.value for s in ACTIVE])
        return {NeedCategory(r["need"]) for r in rows}

    async def asked(self, case_id: UUID, need: NeedCategory) -> list[Recipient]:
        """Everyone already asked for `need` on the case, whatever they answered."""
        rows = await self.conn.fetch("SELECT recipient FROM referrals WHERE case_id = $1 AND need = $2",
                                     case_id, need.value)
        return [_recipient(r["recipient"]) for r in rows]

    async def next_rank(self, case_id: UUID, need: NeedCategory) -> int:
        return await self.conn.fetchval("SELECT coalesce(max(candidate_rank), 0) + 1 FROM referrals "
                                        "WHERE case_id = $1 AND need = $2", case_id, need.value)

    async def add_referral(self, referral: Referral) -> None:
        """Insert a referral; the caller holds its sheet's lock (rule at the top)."""
        await self.conn.execute(
            "INSERT INTO referrals (referral_id, case_id, sheet_id, need, recipient, candidate_rank, status, urgency, "
            "accept_by, requested_at, updated_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11)",
            referral.referral_id, referral.case_id, referral.sheet_id, referral.need.value,
            referral.recipient.model_dump_json(exclude_none=True), referral.candidate_rank, referral.status.value,
            referral.urgency.value, referral.accept_by, referral.requested_at, referral.updated_at)

    async def update_referral(self, referral_id: UUID, status: Status, detail: Detail, *, at: datetime) -> None:
        """Record an action on a referral the caller holds locked; a detail it lacks keeps what was there."""
        await self.conn.execute(
            "UPDATE referrals SET status = $2, decline_reason = coalesce($3, decline_reason), "
            "contact_method = coalesce($4, contact_method), outcome = coalesce($5, outcome), updated_at = $6 "
            "WHERE referral_id = $1", referral_id, status.value, detail.reason and detail.reason.value,
            detail.method and detail.method.value, detail.outcome and detail.outcome.value, at)

    async def overdue_referrals(self, now: datetime, limit: int) -> list[tuple[Referral, str]]:
        """Requested referrals past their deadline and not yet reported, with their municipality, for the
        acceptance timer. SKIP LOCKED on the referral only (rule at the top)."""
        rows = await self.conn.fetch(
            "SELECT r.*, s.municipality_code FROM referrals r "
            "JOIN sheets s USING (sheet_id) WHERE r.status = 'requested' AND r.overdue_at IS NULL AND r.accept_by < $1 "
            "AND s.closed_at IS NULL ORDER BY r.accept_by LIMIT $2 FOR UPDATE OF r SKIP LOCKED", now, limit)
        return [(_referral(r), r["municipality_code"]) for r in rows]

    async def mark_overdue(self, referral_ids: list[UUID], at: datetime) -> None:
        await self.conn.execute("UPDATE referrals SET overdue_at = $2 WHERE referral_id = ANY($1::uuid[])",
                                referral_ids, at)

    # permissions (single writer: the intake consumer, rule at the top) --------------------------

    async def grant(self, grant_id: UUID, case_id: UUID, partner_id: UUID, basis: str, purpose: ConsentPurpose,
                    valid_until) -> None:
        await self.conn.execute(
            "INSERT INTO permissions (grant_id, case_id, partner_id, basis, purpose, valid_until) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            grant_id, case_id, partner_id, basis, purpose.value, valid_until)

    async def end_permission(self, grant_id: UUID, at: datetime) -> None:
        await self.conn.execute("UPDATE permissions SET ended_at = $2 WHERE grant_id = $1 AND ended_at IS NULL",
                                grant_id, at)

    async def purposes_held(self, case_id: UUID, partner_id: UUID, on) -> frozenset[ConsentPurpose]:
        """The purposes of the consents and statutory bases the partner still holds on the case on `on`."""
        rows = await self.conn.fetch(
            "SELECT DISTINCT purpose FROM permissions WHERE case_id = $1 AND partner_id = $2 AND ended_at IS NULL "
            "AND (valid_until IS NULL OR valid_until >= $3)", case_id, partner_id, on)
        return frozenset(ConsentPurpose(r["purpose"]) for r in rows)

    # follow-ups (rules at the top) ---------------------------------------------------------------

    async def schedule_follow_up(self, follow_up: FollowUp) -> None:
        """Schedule a referral's follow-up, or move it while it is still scheduled; the caller holds
        the referral and its sheet. An opened or answered follow-up stays as it is."""
        await self.conn.execute(
            "INSERT INTO follow_ups (follow_up_id, referral_id, case_id, need, counter, due_on, answer_by) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (referral_id) DO UPDATE "
            "SET due_on = EXCLUDED.due_on, answer_by = EXCLUDED.answer_by WHERE follow_ups.opened_at IS NULL",
            follow_up.follow_up_id, follow_up.referral_id, follow_up.case_id, follow_up.need.value,
            follow_up.counter.value, follow_up.due_on, follow_up.answer_by)

    async def cancel_follow_up(self, referral_id: UUID) -> None:
        """A referral that left its recipient needs no follow-up, unless it was already asked."""
        await self.conn.execute("DELETE FROM follow_ups WHERE referral_id = $1 AND opened_at IS NULL", referral_id)

    async def follow_up(self, follow_up_id: UUID, *, lock: bool = False) -> FollowUp | None:
        # lock=True: taken after the sheet's lock; two answers at once queue here (rule at the top).
        row = await self.conn.fetchrow(f"SELECT * FROM follow_ups WHERE follow_up_id = $1{LOCK if lock else ''}",
                                       follow_up_id)
        return _follow_up(row) if row else None

    async def follow_up_of(self, referral_id: UUID) -> FollowUp | None:
        row = await self.conn.fetchrow("SELECT * FROM follow_ups WHERE referral_id = $1", referral_id)
        return _follow_up(row) if row else None

    async def falling_due(self, today, limit: int) -> list[tuple[FollowUp, str]]:
        """Scheduled follow-ups due by `today` on open cases, with their municipality, for the timer.
        SKIP LOCKED on the follow-up only (rule at the top)."""
        rows = await self.conn.fetch(
            "SELECT f.*, s.municipality_code FROM follow_ups f JOIN sheets s USING (case_id) "
            "WHERE f.opened_at IS NULL AND f.due_on <= $1 AND s.closed_at IS NULL ORDER BY f.due_on LIMIT $2 "
            "FOR UPDATE OF f SKIP LOCKED", today, limit)
        return [(_follow_up(r), r["municipality_code"]) for r in rows]

    async def open_follow_ups(self, follow_up_ids: list[UUID], at: datetime) -> None:
        await self.conn.execute("UPDATE follow_ups SET opened_at = $2 WHERE follow_up_id = ANY($1::uuid[])",
                                follow_up_ids, at)

    async def answer_follow_up(self, follow_up_id: UUID, outcome: FollowUpOutcome, *, by: str, at: datetime,
                               reopened_referral_id: UUID | None) -> None:
        """Record the answer to a follow-up the caller holds locked (rule at the top)."""
        await self.conn.execute(
            "UPDATE follow_ups SET outcome = $2, answered_by = $3, answered_at = $4, reopened_referral_id = $5 "
            "WHERE follow_up_id = $1", follow_up_id, outcome.value, by, at, reopened_referral_id)

    async def follow_ups(self, state: str | None, counter: Division | None, now: datetime,
                         limit: int, case_id: UUID | None = None) -> list[FollowUp]:
        """Follow-ups waiting for their answer, overdue first, then by the day they fell due (as the
        referrals' queue); `state` 'due' or 'overdue' keeps one of the two, `counter` one counter's,
        `case_id` one case's."""
        rows = await self.conn.fetch(
            "SELECT * FROM follow_ups WHERE opened_at IS NOT NULL AND answered_at IS NULL "
            "AND ($1::text IS NULL OR ($1 = 'overdue') = (answer_by < $2)) AND ($4::text IS NULL OR counter = $4) "
            "AND ($5::uuid IS NULL OR case_id = $5) "
            "ORDER BY (answer_by < $2) DESC, answer_by, due_on LIMIT $3", state, now, limit,
            counter and counter.value, case_id)
        return [_follow_up(r) for r in rows]

    # routing ----------------------------------------------------------------------------------

    async def routes(self, need: NeedCategory) -> list[tuple[int, Recipient]]:
        # Not locked: a routing change commits whole, and is seen whole or not at all (rule at the top).
        rows = await self.conn.fetch("SELECT rank, recipient FROM routes WHERE need = $1 ORDER BY rank", need.value)
        return [(r["rank"], _recipient(r["recipient"])) for r in rows]

    async def routing_table(self) -> dict[NeedCategory, list[Recipient]]:
        table: dict[NeedCategory, list[Recipient]] = {}
        for r in await self.conn.fetch("SELECT need, rank, recipient FROM routes ORDER BY need, rank"):
            table.setdefault(NeedCategory(r["need"]), []).append(_recipient(r["recipient"]))
        return table

    async def set_routes(self, need: NeedCategory, candidates: list[Recipient]) -> None:
        """Replace a need's candidates in the caller's transaction: readers see the old table or the new."""
        await self.conn.execute("DELETE FROM routes WHERE need = $1", need.value)
        await self.conn.executemany("INSERT INTO routes (need, rank, recipient) VALUES ($1, $2, $3::jsonb)",
                                    [(need.value, rank, r.model_dump_json(exclude_none=True))
                                     for rank, r in enumerate(candidates, start=1)])


def unit_of_work(pool: asyncpg.Pool, *, on_append: OnAppend) -> AbstractAsyncContextManager[UnitOfWork[Repository]]:
    """A new transaction over referral's tables; committed with its events when the block ends.
    `on_append`: what else the service does with its events in the transaction (its report read
    model projects them), asked for at every call so that no path forgets it."""
    return outbox_unit_of_work(pool, Repository, on_append=on_append)
