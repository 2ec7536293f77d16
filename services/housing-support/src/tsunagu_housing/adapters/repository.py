"""Every SQL statement of housing support, and the unit of work around one asyncpg transaction.

Concurrency rules, stated once here and beside each statement that needs one:

- A support's row lock (`support(..., lock=True)`) serialises everything that changes one support:
  stage moves, lead changes, tasks, schedules and check-ins (and the check-in's Idempotency-Key,
  looked up and recorded under it). Take it first. It is FOR NO KEY UPDATE,
  not FOR UPDATE: rows that refer to the support (a check-in the timer writes) take a key-share
  lock on it for their foreign key, and FOR UPDATE would make the timer wait for a recording that
  waits for the timer's rule lock (a deadlock the concurrency test found). The same holds for
  members.
- Check-in rules are locked after their support by recordings and schedule changes; the missed
  check-in timer locks rules alone with SKIP LOCKED and never waits for a support, so the two
  cannot deadlock, and a rule a recording holds is simply checked on the timer's next round.
- One open support per case is a unique index (`supports_one_open_per_case`): the referral consumer
  and a person opening one by hand race on it, and the loser finds the winner.
- Choosing a lead locks the candidate members' rows in id order, so two supports opened at once
  count each other's load instead of both picking the same least-loaded member.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import date, datetime, timedelta
from uuid import UUID

import asyncpg

from tsunagu_contracts import Recipient
from tsunagu_contracts.codes import CheckInKind, HousingRole, TenancyStage
from tsunagu_housing.domain.members import Member
from tsunagu_housing.domain.model import Case, DueRule, ScheduledRule, Support, Tenancy
from tsunagu_housing.domain.schedule import CheckInRule
from tsunagu_outbox import UnitOfWork
from tsunagu_outbox import unit_of_work as outbox_unit_of_work

LOCK = " FOR NO KEY UPDATE"
"""A support's row lock: excludes other changes to it, admits the key-share locks of rows referring to it."""


def _member(row: asyncpg.Record) -> Member:
    recipient = Recipient(kind=row["kind"], division=row["division"], partner_id=row["partner_id"])
    return Member(row["member_id"], row["name"], recipient, frozenset(HousingRole(r) for r in row["takes_on"]),
                  row["registered_at"])


def _support(row: asyncpg.Record) -> Support:
    return Support(row["support_id"], row["case_id"], row["person_ref"], row["municipality_code"], row["referral_id"],
                   row["referred_at"], TenancyStage(row["stage"]), row["stage_since"], row["lead_member_id"],
                   row["opened_at"])


def _rule(row: asyncpg.Record) -> ScheduledRule:
    rule = CheckInRule(CheckInKind(row["kind"]), row["rrule"], timedelta(minutes=row["grace_minutes"]))
    return ScheduledRule(row["rule_id"], row["support_id"], rule, row["due_at"])


class Repository:
    """The housing tables, read and written inside the caller's transaction."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    # cases ------------------------------------------------------------------------------------

    async def remember_case(self, case: Case) -> None:
        await self.conn.execute(
            "INSERT INTO cases (case_id, person_ref, municipality_code) VALUES ($1, $2, $3) "
            "ON CONFLICT (case_id) DO NOTHING", case.case_id, case.person_ref, case.municipality_code)

    async def case(self, case_id: UUID) -> Case | None:
        row = await self.conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
        return Case(row["case_id"], row["person_ref"], row["municipality_code"]) if row else None

    # members ----------------------------------------------------------------------------------

    async def add_member(self, member: Member) -> bool:
        """False when the division or partner is already a member (a unique index decides)."""
        status = await self.conn.execute(
            "INSERT INTO members (member_id, name, kind, division, partner_id, takes_on, registered_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            member.member_id, member.name, member.recipient.kind.value,
            member.recipient.division.value if member.recipient.division else None, member.recipient.partner_id,
            sorted(r.value for r in member.takes_on), member.registered_at)
        return status == "INSERT 0 1"

    async def member(self, member_id: UUID) -> Member | None:
        row = await self.conn.fetchrow("SELECT * FROM members WHERE member_id = $1", member_id)
        return _member(row) if row else None

    async def members(self) -> list[Member]:
        return [_member(r) for r in await self.conn.fetch("SELECT * FROM members ORDER BY registered_at, member_id")]

    async def members_taking_on(self, role: HousingRole) -> list[Member]:
        # Locked in id order: openings that run at once see each other's choice (rule at the top).
        rows = await self.conn.fetch(
            "SELECT * FROM members WHERE $1 = ANY(takes_on) ORDER BY member_id FOR NO KEY UPDATE", role.value)
        return [_member(r) for r in rows]

    async def open_supports_by_lead(self) -> dict[UUID, int]:
        rows = await self.conn.fetch("SELECT lead_member_id, count(*) AS n FROM supports WHERE stage <> 'ended' "
                                     "GROUP BY lead_member_id")
        return {r["lead_member_id"]: r["n"] for r in rows}

    async def open_tasks_by_member(self, role: HousingRole) -> dict[UUID, int]:
        rows = await self.conn.fetch("SELECT member_id, count(*) AS n FROM tasks WHERE done_at IS NULL AND kind = $1 "
                                     "GROUP BY member_id", role.value)
        return {r["member_id"]: r["n"] for r in rows}

    async def partner_is_involved(self, support_id: UUID, partner_id: UUID) -> bool:
        """The partner leads the support or has a task on it."""
        return bool(await self.conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM supports s JOIN members m ON m.member_id = s.lead_member_id "
            "WHERE s.support_id = $1 AND m.partner_id = $2) OR EXISTS (SELECT 1 FROM tasks t JOIN members m "
            "USING (member_id) WHERE t.support_id = $1 AND m.partner_id = $2)", support_id, partner_id))

    # supports ---------------------------------------------------------------------------------

    async def insert_support(self, support: Support, opened_by: str) -> bool:
        """False when the case already has a support under way (the unique index decides)."""
        status = await self.conn.execute(
            "INSERT INTO supports (support_id, case_id, person_ref, municipality_code, referral_id, referred_at, "
            "stage, stage_since, lead_member_id, opened_at, opened_by) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT (case_id) WHERE stage <> 'ended' DO NOTHING",
            support.support_id, support.case_id, support.person_ref, support.municipality_code, support.referral_id,
            support.referred_at, support.stage.value, support.stage_since, support.lead_member_id, support.opened_at,
            opened_by)
        return status == "INSERT 0 1"

    async def open_support_of_case(self, case_id: UUID, *, lock: bool = False) -> Support | None:
        row = await self.conn.fetchrow(
            f"SELECT * FROM supports WHERE case_id = $1 AND stage <> 'ended'{LOCK if lock else ''}", case_id)
        return _support(row) if row else None

    async def support(self, support_id: UUID, *, lock: bool = False) -> Support | None:
        # lock=True: the support's row lock serialises every change to it (rule at the top).
        row = await self.conn.fetchrow(
            f"SELECT * FROM supports WHERE support_id = $1{LOCK if lock else ''}", support_id)
        return _support(row) if row else None

    async def link_referral(self, support_id: UUID, referral_id: UUID) -> None:
        await self.conn.execute("UPDATE supports SET referral_id = $2 WHERE support_id = $1", support_id, referral_id)

    async def move(self, support: Support, to: TenancyStage, *, at: datetime, by: str, reason: bytes | None,
                   end_reason: str | None) -> None:
        """Record a stage move of a support the caller holds locked."""
        await self.conn.execute(
            "UPDATE supports SET stage = $2::text, stage_since = $3::timestamptz, "
            "ended_at = CASE WHEN $2::text = 'ended' THEN $3::timestamptz END, "
            "end_reason = $4 WHERE support_id = $1", support.support_id, to.value, at, end_reason)
        await self.record_stage(support.support_id, support.stage, to, at=at, by=by, reason=reason,
                                end_reason=end_reason)

    async def record_stage(self, support_id: UUID, from_stage: TenancyStage | None, to: TenancyStage, *,
                           at: datetime, by: str, reason: bytes | None = None, end_reason: str | None = None) -> None:
        await self.conn.execute(
            "INSERT INTO stage_changes (support_id, changed_at, from_stage, to_stage, changed_by, reason, end_reason) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)", support_id, at, from_stage.value if from_stage else None,
            to.value, by, reason, end_reason)

    async def set_lead(self, support_id: UUID, member_id: UUID) -> None:
        await self.conn.execute("UPDATE supports SET lead_member_id = $2 WHERE support_id = $1", support_id, member_id)

    # tenancies --------------------------------------------------------------------------------

    async def add_tenancy(self, tenancy: Tenancy, home: bytes) -> None:
        await self.conn.execute(
            "INSERT INTO tenancies (tenancy_id, support_id, home, moved_in_on) VALUES ($1, $2, $3, $4)",
            tenancy.tenancy_id, tenancy.support_id, home, tenancy.moved_in_on)

    async def tenancy(self, support_id: UUID) -> Tenancy | None:
        row = await self.conn.fetchrow("SELECT * FROM tenancies WHERE support_id = $1", support_id)
        return Tenancy(row["tenancy_id"], row["support_id"], row["moved_in_on"], row["ended_on"]) if row else None

    async def end_tenancy(self, tenancy_id: UUID, ended_on: date, reason: str) -> None:
        await self.conn.execute("UPDATE tenancies SET ended_on = $2, end_reason = $3 WHERE tenancy_id = $1",
                                tenancy_id, ended_on, reason)

    # tasks ------------------------------------------------------------------------------------

    async def add_task(self, task_id: UUID, support_id: UUID, member_id: UUID, kind: HousingRole, *,
                       due_on: date | None, at: datetime, by: str) -> None:
        await self.conn.execute(
            "INSERT INTO tasks (task_id, support_id, member_id, kind, due_on, assigned_at, assigned_by) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)", task_id, support_id, member_id, kind.value, due_on, at, by)

    async def task_member(self, support_id: UUID, task_id: UUID) -> tuple[UUID, bool] | None:
        """The task's member and whether it is done, or None when the support has no such task."""
        row = await self.conn.fetchrow("SELECT member_id, done_at IS NOT NULL AS done FROM tasks "
                                       "WHERE task_id = $1 AND support_id = $2", task_id, support_id)
        return (row["member_id"], row["done"]) if row else None

    async def complete_task(self, task_id: UUID, *, at: datetime, by: str) -> None:
        await self.conn.execute("UPDATE tasks SET done_at = $2, done_by = $3 WHERE task_id = $1", task_id, at, by)

    # check-ins --------------------------------------------------------------------------------

    async def replace_rules(self, support_id: UUID, rules: list[ScheduledRule], *, at: datetime) -> None:
        # Deleting waits for a timer holding one of these rules; the timer never waits for us.
        await self.conn.execute("DELETE FROM check_in_rules WHERE support_id = $1", support_id)
        await self.conn.executemany(
            "INSERT INTO check_in_rules (rule_id, support_id, kind, rrule, grace_minutes, due_at, set_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [(r.rule_id, support_id, r.kind.value, r.rule.rrule, int(r.rule.grace / timedelta(minutes=1)), r.due_at,
              at) for r in rules])

    async def rules(self, support_id: UUID, *, kind: CheckInKind | None = None, lock: bool = False
                    ) -> list[ScheduledRule]:
        # lock=True after the support's lock: waits for a timer round holding a rule, which is short.
        rows = await self.conn.fetch(
            "SELECT * FROM check_in_rules WHERE support_id = $1 AND ($2::text IS NULL OR kind = $2) "
            f"ORDER BY rule_id{' FOR UPDATE' if lock else ''}", support_id, kind.value if kind else None)
        return [_rule(r) for r in rows]

    async def set_due(self, rule_id: UUID, due_at: datetime | None) -> None:
        await self.conn.execute("UPDATE check_in_rules SET due_at = $2 WHERE rule_id = $1", rule_id, due_at)

    async def stop_rules(self, support_id: UUID) -> None:
        await self.conn.execute("UPDATE check_in_rules SET due_at = NULL WHERE support_id = $1", support_id)

    async def due_rules(self, now: datetime, limit: int) -> list[DueRule]:
        """Rules whose cursor's grace has passed, for the timer. SKIP LOCKED: a rule a recording or
        another instance holds is taken on a later round (rule at the top); supports are not locked."""
        rows = await self.conn.fetch(
            "SELECT r.*, s.case_id, s.municipality_code, s.lead_member_id, t.tenancy_id, m.kind AS lead_kind, "
            "m.division AS lead_division, m.partner_id AS lead_partner_id "
            "FROM check_in_rules r JOIN supports s USING (support_id) JOIN tenancies t USING (support_id) "
            "JOIN members m ON m.member_id = s.lead_member_id "
            "WHERE r.due_at IS NOT NULL AND r.due_at + make_interval(mins => r.grace_minutes) < $1 "
            "AND s.stage <> 'ended' AND t.ended_on IS NULL "
            "ORDER BY r.due_at LIMIT $2 FOR UPDATE OF r SKIP LOCKED", now, limit)
        return [DueRule(_rule(r), r["case_id"], r["municipality_code"], r["tenancy_id"], r["lead_member_id"],
                        Recipient(kind=r["lead_kind"], division=r["lead_division"], partner_id=r["lead_partner_id"]))
                for r in rows]

    async def add_check_in(self, check_in_id: UUID, support_id: UUID, tenancy_id: UUID, *, kind: CheckInKind | None,
                           status: str, at: datetime, by: str, result: str | None = None,
                           member_id: UUID | None = None, scheduled_for: datetime | None = None,
                           missed_occurrences: int = 0, escalation: str | None = None) -> None:
        await self.conn.execute(
            "INSERT INTO check_ins (check_in_id, support_id, tenancy_id, kind, status, result, member_id, "
            "scheduled_for, at, missed_occurrences, escalation, recorded_by) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            check_in_id, support_id, tenancy_id, kind.value if kind else None, status, result, member_id,
            scheduled_for, at, missed_occurrences, escalation, by)

    async def check_in_of_key(self, support_id: UUID, key: str) -> tuple[bytes, UUID] | None:
        """The request hash and check-in an Idempotency-Key was first recorded with. Read under the
        support's row lock (rule at the top), so a repeat sent at once waits for the first to commit."""
        row = await self.conn.fetchrow("SELECT request_hash, check_in_id FROM check_in_keys "
                                       "WHERE support_id = $1 AND key = $2", support_id, key)
        return (bytes(row["request_hash"]), row["check_in_id"]) if row else None

    async def remember_check_in_key(self, support_id: UUID, key: str, request_hash: bytes, check_in_id: UUID) -> None:
        # In the recording's transaction, under the support's row lock; the primary key (support_id,
        # key) refuses a second row should a writer ever skip the lock.
        await self.conn.execute("INSERT INTO check_in_keys (support_id, key, request_hash, check_in_id) "
                                "VALUES ($1, $2, $3, $4)", support_id, key, request_hash, check_in_id)

    async def last_result(self, support_id: UUID) -> str | None:
        return await self.conn.fetchval(
            "SELECT result FROM check_ins WHERE support_id = $1 AND status = 'recorded' ORDER BY at DESC, "
            "check_in_id DESC LIMIT 1", support_id)


def unit_of_work(pool: asyncpg.Pool) -> AbstractAsyncContextManager[UnitOfWork[Repository]]:
    """A new transaction over the housing tables; committed with its events when the block ends."""
    return outbox_unit_of_work(pool, Repository)
