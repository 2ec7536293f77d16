"""Timers that survive restarts: deadlines live in the database, so a check that was due while the
service was down fires at the next check after it comes back.

Several instances may check at once: `FOR UPDATE SKIP LOCKED` gives each row to one of them.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import asyncpg

from tsunagu_contracts import CaseContactOverdue, Recipient, ReferralOverdue
from tsunagu_contracts.codes import Division
from tsunagu_outbox import append

COORDINATOR = Division.SELF_RELIANCE


async def raise_overdue_referrals(conn: asyncpg.Connection, *, now: datetime, limit: int = 200) -> int:
    """Referrals not accepted by their deadline become ReferralOverdue, escalated to the coordinator."""
    rows = await conn.fetch(
        "SELECT r.referral_id, r.case_id, r.recipient, r.accept_by, s.municipality_code FROM referrals r "
        "JOIN sheets s USING (sheet_id) WHERE r.status = 'requested' AND r.overdue_at IS NULL AND r.accept_by < $1 "
        "AND s.closed_at IS NULL ORDER BY r.accept_by LIMIT $2 FOR UPDATE OF r SKIP LOCKED", now, limit)
    if not rows:
        return 0
    await conn.execute("UPDATE referrals SET overdue_at = $2 WHERE referral_id = ANY($1::uuid[])",
                       [r["referral_id"] for r in rows], now)
    await append(conn, *(ReferralOverdue(
        case_id=r["case_id"], municipality_code=r["municipality_code"], occurred_at=now, referral_id=r["referral_id"],
        recipient=Recipient.model_validate(json.loads(r["recipient"])), accept_by=r["accept_by"],
        escalated_to=COORDINATOR) for r in rows))
    return len(rows)


async def raise_contact_overdue(conn: asyncpg.Connection, *, now: datetime, contact_days: int,
                                limit: int = 200) -> int:
    """An open case with no recorded contact for `contact_days` becomes CaseContactOverdue, and again
    every `contact_days` while the silence lasts: once connected, nobody is left alone."""
    horizon = now - timedelta(days=contact_days)
    rows = await conn.fetch(
        "SELECT case_id, municipality_code, last_contact_at, coalesce(last_contact_at, opened_at) AS silent_since "
        "FROM sheets WHERE closed_at IS NULL AND coalesce(last_contact_at, opened_at) < $1 "
        "AND (contact_overdue_at IS NULL OR contact_overdue_at < greatest(coalesce(last_contact_at, opened_at), $1)) "
        "ORDER BY silent_since LIMIT $2 FOR UPDATE SKIP LOCKED", horizon, limit)
    if not rows:
        return 0
    await conn.execute("UPDATE sheets SET contact_overdue_at = $2 WHERE case_id = ANY($1::uuid[])",
                       [r["case_id"] for r in rows], now)
    await append(conn, *(CaseContactOverdue(
        case_id=r["case_id"], municipality_code=r["municipality_code"], occurred_at=now,
        last_contact_at=r["last_contact_at"], days_without_contact=(now - r["silent_since"]).days,
        escalated_to=COORDINATOR) for r in rows))
    return len(rows)
