"""Timers that survive restarts: deadlines live in the database, so a check that was due while the
service was down fires at the next check after it comes back.

Several instances may check at once: the repository gives each row to one of them (SKIP LOCKED).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tsunagu_contracts import CaseContactOverdue, ReferralOverdue
from tsunagu_contracts.codes import Division

COORDINATOR = Division.SELF_RELIANCE


async def raise_overdue_referrals(uow, *, now: datetime, limit: int = 200) -> int:
    """Referrals not accepted by their deadline become ReferralOverdue, escalated to the coordinator."""
    overdue = await uow.repo.overdue_referrals(now, limit)
    if not overdue:
        return 0
    await uow.repo.mark_overdue([r.referral_id for r, _ in overdue], now)
    uow.emit(*(ReferralOverdue(
        case_id=r.case_id, municipality_code=municipality_code, occurred_at=now, referral_id=r.referral_id,
        recipient=r.recipient, accept_by=r.accept_by, escalated_to=COORDINATOR) for r, municipality_code in overdue))
    return len(overdue)


async def raise_contact_overdue(uow, *, now: datetime, contact_days: int, limit: int = 200) -> int:
    """An open case with no recorded contact for `contact_days` becomes CaseContactOverdue, and again
    every `contact_days` while the silence lasts: once connected, nobody is left alone."""
    silent = await uow.repo.silent_sheets(now - timedelta(days=contact_days), limit)
    if not silent:
        return 0
    await uow.repo.mark_contact_overdue([s.case_id for s in silent], now)
    uow.emit(*(CaseContactOverdue(
        case_id=s.case_id, municipality_code=s.municipality_code, occurred_at=now, last_contact_at=s.last_contact_at,
        days_without_contact=(now - s.silent_since).days, escalated_to=COORDINATOR) for s in silent))
    return len(silent)
