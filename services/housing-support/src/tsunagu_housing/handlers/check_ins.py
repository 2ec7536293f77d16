"""Check-ins (見守り): schedules, recordings, escalations, and the timer that reports missed ones."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta
from uuid import UUID

from tsunagu_contracts import CheckInEscalated, CheckInMissed, CheckInRecorded, uuid7
from tsunagu_contracts.codes import CheckInKind, CheckInResult
from tsunagu_contracts.japan import JST, japan_date
from tsunagu_housing.domain.commands import CheckInSchedule, RecordCheckIn
from tsunagu_servicehost.errors import Rejected
from tsunagu_housing.domain.escalation import escalation
from tsunagu_housing.domain.model import Actor, ScheduledRule
from tsunagu_housing.domain.schedule import CheckInRule
from tsunagu_housing.domain.stages import TENANCY_STAGES
from tsunagu_housing.handlers.access import member_acting, support_for

TIMER = "check-in-timer"


def default_rule(moved_in_on: date, every_days: int) -> CheckInRule:
    """Without a schedule of its own, a tenancy gets a visit every N days from moving in, at 10:00."""
    start = datetime.combine(moved_in_on + timedelta(days=every_days), time(10, 0))
    return CheckInRule(CheckInKind.VISIT, f"DTSTART;TZID=Asia/Tokyo:{start:%Y%m%dT%H%M%S}\n"
                                          f"RRULE:FREQ=DAILY;INTERVAL={every_days}", timedelta(days=1))


async def schedule_rules(uow, support_id: UUID, schedule: CheckInSchedule | None, *, moved_in_on: date,
                         now: datetime, default_every_days: int) -> int:
    """Replace the support's rules; returns the shortest interval in days (what TenancyStarted says)."""
    rules = ([spec.rule() for spec in schedule.rules] if schedule is not None
             else [default_rule(moved_in_on, default_every_days)])
    scheduled = [ScheduledRule(uuid7(), support_id, rule, rule.first_due(now)) for rule in rules]
    await uow.repo.replace_rules(support_id, scheduled, at=now)
    intervals = [d for rule in rules if (d := rule.every_days(now)) is not None]
    return min(intervals, default=default_every_days)


async def set_schedule(uow, support_id: UUID, schedule: CheckInSchedule, *, by: Actor, now: datetime,
                       default_every_days: int) -> list[ScheduledRule]:
    support = await support_for(uow, support_id, by, lock=True)
    tenancy = await uow.repo.tenancy(support_id)
    if support.stage not in TENANCY_STAGES or tenancy is None:
        raise Rejected.conflict("見守りの予定は入居後に設定できます。", "check-ins are scheduled once the person has moved in")
    await schedule_rules(uow, support_id, schedule, moved_in_on=tenancy.moved_in_on, now=now,
                         default_every_days=default_every_days)
    return await uow.repo.rules(support_id)


async def record_check_in(uow, support_id: UUID, cmd: RecordCheckIn, *, by: Actor, now: datetime,
                          idempotency_key: str | None = None) -> UUID:
    """Record one check-in. It answers the occurrence whose window it falls in; an emergency, or a
    second absence in a row, reaches the lead member at once (CheckInEscalated).

    With an `idempotency_key`, the same request sent again (a double tap) answers with the check-in
    the first one recorded and records nothing; the key sent with another request is refused."""
    support = await support_for(uow, support_id, by, lock=True)
    fingerprint = hashlib.sha256(f"{by.subject}\n{cmd.model_dump_json()}".encode()).digest()
    if idempotency_key is not None and (first := await uow.repo.check_in_of_key(support_id, idempotency_key)):
        recorded_for, check_in_id = first
        if recorded_for != fingerprint:
            raise Rejected.invalid("Idempotency-Key", "同じ Idempotency-Key で異なる内容が送られました。",
                                   "this Idempotency-Key was used for a different request")
        return check_in_id
    tenancy = await uow.repo.tenancy(support_id)
    if support.stage not in TENANCY_STAGES or tenancy is None or tenancy.ended_on is not None:
        raise Rejected.conflict("入居中の支援にだけ見守りを記録できます。", "check-ins are recorded during a tenancy")
    member = await member_acting(uow, cmd.member_id, by)
    at = cmd.at or now
    if at > now + timedelta(minutes=5):
        raise Rejected.invalid("at", "未来の日時は記録できません。", "a check-in cannot be recorded in the future")
    answered = None
    for scheduled in await uow.repo.rules(support_id, kind=cmd.kind, lock=True):
        if scheduled.due_at is not None and scheduled.rule.answers(scheduled.due_at, at):
            answered = scheduled.due_at
            await uow.repo.set_due(scheduled.rule_id, scheduled.rule.after(scheduled.due_at))
    previous = await uow.repo.last_result(support_id)
    reason = escalation(CheckInResult(previous) if previous else None, cmd.result)
    check_in_id = uuid7()
    await uow.repo.add_check_in(check_in_id, support_id, tenancy.tenancy_id, kind=cmd.kind, status="recorded", at=at,
                                by=by.subject, result=cmd.result.value, member_id=member.member_id,
                                scheduled_for=answered, escalation=reason.value if reason else None)
    if idempotency_key is not None:
        await uow.repo.remember_check_in_key(support_id, idempotency_key, fingerprint, check_in_id)
    base = {"case_id": support.case_id, "municipality_code": support.municipality_code, "occurred_at": now,
            "support_id": support_id, "tenancy_id": tenancy.tenancy_id, "check_in_id": check_in_id}
    uow.emit(CheckInRecorded(**base, scheduled_for=japan_date(answered or at), result=cmd.result, kind=cmd.kind))
    if reason is not None:
        lead = await uow.repo.member(support.lead_member_id)
        uow.emit(CheckInEscalated(**base, reason=reason, responsible_member_id=lead.member_id,
                                  responsible=lead.recipient))
    return check_in_id


async def report_missed(uow, *, now: datetime, limit: int = 200) -> int:
    """Every rule whose occurrence's grace has passed becomes one CheckInMissed, addressed to the
    support's lead, and its cursor moves past now: after a stop, once, not once per missed tick."""
    reported = 0
    for due in await uow.repo.due_rules(now, limit):
        scheduled = due.scheduled
        missed = scheduled.rule.catch_up(scheduled.due_at, now)
        if missed is None:
            continue
        await uow.repo.set_due(scheduled.rule_id, missed.next_due)
        check_in_id = uuid7()
        await uow.repo.add_check_in(check_in_id, scheduled.support_id, due.tenancy_id, kind=scheduled.kind,
                                    status="missed", at=now, by=TIMER, scheduled_for=missed.latest,
                                    missed_occurrences=missed.count)
        uow.emit(CheckInMissed(
            case_id=due.case_id, municipality_code=due.municipality_code, occurred_at=now,
            support_id=scheduled.support_id, tenancy_id=due.tenancy_id, check_in_id=check_in_id,
            scheduled_for=missed.latest.astimezone(JST).date(), responsible_member_id=due.lead_member_id,
            responsible=due.lead, kind=scheduled.kind, missed_occurrences=missed.count))
        reported += 1
    return reported


__all__ = ["record_check_in", "report_missed", "schedule_rules", "set_schedule"]
