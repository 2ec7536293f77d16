"""What the council reads: lists, a support's whole history, check-ins to act on, the overview.

Plain reads outside any lock: each answer is one consistent snapshot (one statement, or one
REPEATABLE READ transaction for the pages built from several).
"""

from __future__ import annotations

import statistics
from datetime import date, datetime, timedelta
from uuid import UUID

import asyncpg

from tsunagu_contracts.codes import CheckInKind, CheckInResult, HousingRole, TenancyEndReason, TenancyStage
from tsunagu_contracts.japan import JST, japan_date
from tsunagu_housing.adapters.sealing import Sealer
from tsunagu_servicehost.rows import jsonable

PAGE_SIZE = 50

# A partner sees the supports it leads or has a task on; $n is its partner id, NULL for staff.
_VISIBLE = ("($%d::uuid IS NULL OR EXISTS (SELECT 1 FROM members lm WHERE lm.member_id = s.lead_member_id "
            "AND lm.partner_id = $%d) OR EXISTS (SELECT 1 FROM tasks vt JOIN members vm USING (member_id) "
            "WHERE vt.support_id = s.support_id AND vm.partner_id = $%d))")


TO_FOLLOW_UP = (
    "(c.status = 'missed' OR c.escalation IS NOT NULL) AND s.stage <> 'ended' "
    "AND NOT EXISTS (SELECT 1 FROM check_ins later WHERE later.support_id = c.support_id "
    "AND later.status = 'recorded' AND later.at > c.at AND later.result NOT IN ('not_at_home', 'emergency'))")
"""A missed or escalated check-in `c` of support `s` that no reassuring check-in has answered since."""


def visible(n: int) -> str:
    return _VISIBLE % (n, n, n)


def _at(value: datetime | None) -> str | None:
    return value.astimezone(JST).isoformat() if value else None


def member_view(row) -> dict:
    return {"member_id": str(row["member_id"]), "name": row["name"], "kind": row["kind"], "division": row["division"],
            "partner_id": str(row["partner_id"]) if row["partner_id"] else None, "takes_on": list(row["takes_on"]),
            "takes_on_labels_ja": [HousingRole(r).label_ja for r in row["takes_on"]],
            "registered_at": _at(row["registered_at"])}


async def members(conn: asyncpg.Connection) -> list[dict]:
    return [member_view(r) for r in await conn.fetch("SELECT * FROM members ORDER BY registered_at, member_id")]


async def supports(conn: asyncpg.Connection, *, stage: TenancyStage | None, member: UUID | None,
                   partner_id: UUID | None, page: int, now: datetime) -> dict:
    rows = await conn.fetch(
        "SELECT s.*, m.name AS lead_name, (SELECT min(due_at) FROM check_in_rules r "
        "WHERE r.support_id = s.support_id) AS next_check_in FROM supports s "
        "JOIN members m ON m.member_id = s.lead_member_id WHERE ($1::text IS NULL OR s.stage = $1) "
        "AND ($2::uuid IS NULL OR s.lead_member_id = $2 OR EXISTS (SELECT 1 FROM tasks t "
        f"WHERE t.support_id = s.support_id AND t.member_id = $2)) AND {visible(3)} "
        "ORDER BY s.opened_at, s.support_id LIMIT $4 OFFSET $5",
        stage.value if stage else None, member, partner_id, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
    today = japan_date(now)
    items = [{
        "support_id": str(r["support_id"]), "case_id": str(r["case_id"]), "stage": r["stage"],
        "stage_label_ja": TenancyStage(r["stage"]).label_ja, "days_in_stage": (today - japan_date(r["stage_since"])).days,
        "lead_member_id": str(r["lead_member_id"]), "lead_name": r["lead_name"], "opened_at": _at(r["opened_at"]),
        "next_check_in": _at(r["next_check_in"]),
    } for r in rows[:PAGE_SIZE]]
    return {"items": items, "page": page, "next_page": page + 1 if len(rows) > PAGE_SIZE else None}


async def support(conn: asyncpg.Connection, support_id: UUID, *, sealer: Sealer, now: datetime) -> dict | None:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow("SELECT s.*, m.name AS lead_name FROM supports s JOIN members m "
                                  "ON m.member_id = s.lead_member_id WHERE support_id = $1", support_id)
        if row is None:
            return None
        stages = await conn.fetch("SELECT * FROM stage_changes WHERE support_id = $1 ORDER BY changed_at", support_id)
        tasks = await conn.fetch("SELECT t.*, m.name AS member_name FROM tasks t JOIN members m USING (member_id) "
                                 "WHERE support_id = $1 ORDER BY assigned_at", support_id)
        check_ins = await conn.fetch("SELECT * FROM check_ins WHERE support_id = $1 ORDER BY at DESC LIMIT 200",
                                     support_id)
        tenancy = await conn.fetchrow("SELECT * FROM tenancies WHERE support_id = $1", support_id)
        rules = await conn.fetch("SELECT * FROM check_in_rules WHERE support_id = $1 ORDER BY kind, rule_id",
                                 support_id)
    return {
        "support_id": str(support_id), "case_id": str(row["case_id"]), "person_ref": str(row["person_ref"]),
        "referral_id": str(row["referral_id"]) if row["referral_id"] else None, "referred_at": _at(row["referred_at"]),
        "stage": row["stage"], "stage_label_ja": TenancyStage(row["stage"]).label_ja,
        "days_in_stage": (japan_date(now) - japan_date(row["stage_since"])).days,
        "lead_member_id": str(row["lead_member_id"]), "lead_name": row["lead_name"], "opened_at": _at(row["opened_at"]),
        "ended_at": _at(row["ended_at"]), "end_reason": row["end_reason"],
        "stages": [{"from_stage": s["from_stage"], "to_stage": s["to_stage"],
                    "to_stage_label_ja": TenancyStage(s["to_stage"]).label_ja, "at": _at(s["changed_at"]),
                    "by": s["changed_by"], "reason": sealer.open(s["reason"])["reason"] if s["reason"] else None,
                    "end_reason": s["end_reason"]} for s in stages],
        "tasks": [{"task_id": str(t["task_id"]), "member_id": str(t["member_id"]), "member_name": t["member_name"],
                   "kind": t["kind"], "kind_label_ja": HousingRole(t["kind"]).label_ja,
                   "due_on": t["due_on"].isoformat() if t["due_on"] else None, "assigned_at": _at(t["assigned_at"]),
                   "done_at": _at(t["done_at"])} for t in tasks],
        "tenancy": None if tenancy is None else {
            "tenancy_id": str(tenancy["tenancy_id"]), **sealer.open(tenancy["home"]),
            "ended_on": tenancy["ended_on"].isoformat() if tenancy["ended_on"] else None,
            "end_reason": tenancy["end_reason"]},
        "check_in_schedule": [{"rule_id": str(r["rule_id"]), "kind": r["kind"], "rrule": r["rrule"],
                               "grace_minutes": r["grace_minutes"], "next_due": _at(r["due_at"])} for r in rules],
        "check_ins": [check_in_view(c) for c in check_ins],
    }


def check_in_view(c) -> dict:
    view = jsonable({k: c[k] for k in ("check_in_id", "support_id", "kind", "status", "result", "member_id",
                                       "missed_occurrences", "escalation")})
    view |= {"scheduled_for": _at(c["scheduled_for"]), "at": _at(c["at"]),
             "result_label_ja": CheckInResult(c["result"]).label_ja if c["result"] else None,
             "kind_label_ja": CheckInKind(c["kind"]).label_ja if c["kind"] else None}
    return view


async def check_ins_due(conn: asyncpg.Connection, *, until: datetime, member: UUID | None,
                        partner_id: UUID | None) -> list[dict]:
    """Occurrences due before `until` that nobody has answered yet (nor reported missed)."""
    rows = await conn.fetch(
        "SELECT r.*, s.case_id, s.lead_member_id FROM check_in_rules r JOIN supports s USING (support_id) "
        "WHERE r.due_at IS NOT NULL AND r.due_at < $1 AND s.stage <> 'ended' "
        f"AND ($2::uuid IS NULL OR s.lead_member_id = $2) AND {visible(3)} ORDER BY r.due_at LIMIT 500",
        until, member, partner_id)
    return [{"support_id": str(r["support_id"]), "case_id": str(r["case_id"]), "kind": r["kind"],
             "kind_label_ja": CheckInKind(r["kind"]).label_ja, "due_at": _at(r["due_at"]),
             "late_after": _at(r["due_at"] + timedelta(minutes=r["grace_minutes"])),
             "lead_member_id": str(r["lead_member_id"])} for r in rows]


async def check_ins_to_follow_up(conn: asyncpg.Connection, *, member: UUID | None, partner_id: UUID | None
                                 ) -> list[dict]:
    """Missed and escalated check-ins with no reassuring check-in after them: what to do now."""
    rows = await conn.fetch(
        "SELECT c.*, s.case_id, s.lead_member_id FROM check_ins c JOIN supports s USING (support_id) "
        f"WHERE {TO_FOLLOW_UP} AND ($1::uuid IS NULL OR s.lead_member_id = $1) AND {visible(2)} "
        "ORDER BY c.at LIMIT 500",
        member, partner_id)
    return [check_in_view(r) | {"case_id": str(r["case_id"]), "lead_member_id": str(r["lead_member_id"])}
            for r in rows]


def month_of(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, 1, tzinfo=JST)
    end = datetime(day.year + (day.month == 12), day.month % 12 + 1, 1, tzinfo=JST)
    return start, end


async def overview(conn: asyncpg.Connection, *, month: date) -> dict:
    """What the council reports at its meetings, from the supports as they stand."""
    start, end = month_of(month)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        by_stage = await conn.fetch("SELECT stage, count(*) AS n FROM supports GROUP BY stage")
        check_ins = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'recorded') AS done, "
            "count(*) FILTER (WHERE status = 'missed') AS missed, "
            "coalesce(sum(missed_occurrences) FILTER (WHERE status = 'missed'), 0) AS missed_occurrences, "
            "count(*) FILTER (WHERE escalation IS NOT NULL) AS escalated "
            "FROM check_ins WHERE at >= $1 AND at < $2", start, end)
        moves = await conn.fetch("SELECT t.moved_in_on, coalesce(s.referred_at, s.opened_at) AS referred_at "
                                 "FROM tenancies t JOIN supports s USING (support_id)")
        ended = await conn.fetch("SELECT end_reason, count(*) AS n FROM tenancies WHERE ended_on IS NOT NULL "
                                 "GROUP BY end_reason")
    days = [(m["moved_in_on"] - japan_date(m["referred_at"])).days for m in moves]
    counts = {r["stage"]: r["n"] for r in by_stage}
    ended_by = {r["end_reason"]: r["n"] for r in ended}
    return {
        "month": f"{month:%Y-%m}",
        "supports_by_stage": [{"stage": s.value, "label_ja": s.label_ja, "count": counts.get(s.value, 0)}
                              for s in TenancyStage],
        "check_ins_this_month": {"done": check_ins["done"], "missed": check_ins["missed"],
                                 "missed_occurrences": check_ins["missed_occurrences"],
                                 "escalated": check_ins["escalated"]},
        "days_from_referral_to_move_in": {"median": statistics.median(days) if days else None, "tenancies": len(days)},
        "tenancies_ended_by_reason": [{"reason": r.value, "label_ja": r.label_ja, "count": ended_by.get(r.value, 0)}
                                      for r in TenancyEndReason],
    }
