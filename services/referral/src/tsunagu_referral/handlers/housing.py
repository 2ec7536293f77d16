"""Housing support's events move the case's housing referral, so the つなぐシート shows its progress.

- HousingSupportOpened: the council took the case on, so the referral is accepted.
- The first stage move, or the first check-in that reached the person: contact made.
- The support ending: completed, with an outcome that says whether the person was housed.

A housing referral may be answered by a partner too (a 居住支援法人 routed the need); whichever
answer comes second no longer fits and is skipped, leaving the event recorded as applied.
"""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

import asyncpg

from tsunagu_contracts import CheckInRecorded, Envelope, HousingSupportOpened, TenancyStageChanged
from tsunagu_contracts.codes import CheckInResult, NeedCategory, TenancyStage
from tsunagu_referral.domain.housing import contact_method, outcome
from tsunagu_referral.domain.referral import ACTIVE, Action, Status
from tsunagu_referral.handlers.referrals import Detail, Policy, act
from tsunagu_servicehost.errors import Refused

log = logging.getLogger("tsunagu.referral.housing")
HOUSED = frozenset({TenancyStage.MOVE_IN, TenancyStage.ACCOMPANIMENT})


async def housing_referral(conn: asyncpg.Connection, case_id: UUID) -> asyncpg.Record | None:
    """The case's housing referral still under way (the latest, after any reroute)."""
    return await conn.fetchrow(
        "SELECT referral_id, status FROM referrals WHERE case_id = $1 AND need = $2 AND status = ANY($3::text[]) "
        "ORDER BY requested_at DESC LIMIT 1", case_id, NeedCategory.HOUSING.value, [s.value for s in ACTIVE])


async def move(conn: asyncpg.Connection, case_id: UUID, action: Action, detail: Detail, *, when: Status | None,
               now: datetime, policy: Policy) -> None:
    referral = await housing_referral(conn, case_id)
    if referral is None or (when is not None and referral["status"] != when.value):
        return
    try:
        async with conn.transaction():  # a savepoint: a move that no longer fits changes nothing
            await act(conn, referral["referral_id"], action, detail, now=now, policy=policy)
    except Refused as refused:
        log.info("housing progress not applied to referral %s: %s", referral["referral_id"], refused.message_en)


async def on_support_opened(conn: asyncpg.Connection, envelope: Envelope[HousingSupportOpened], *,
                            policy: Policy) -> None:
    e = envelope.data
    await move(conn, e.case_id, Action.ACCEPT, Detail(), when=Status.REQUESTED, now=e.occurred_at, policy=policy)


async def on_stage_changed(conn: asyncpg.Connection, envelope: Envelope[TenancyStageChanged], *,
                           policy: Policy) -> None:
    e = envelope.data
    if e.to_stage is TenancyStage.ENDED:
        result = outcome(e.end_reason, housed=e.from_stage in HOUSED) if e.end_reason else None
        await move(conn, e.case_id, Action.COMPLETE, Detail(outcome=result), when=None, now=e.occurred_at,
                   policy=policy)
    else:
        await move(conn, e.case_id, Action.CONTACT, Detail(method=contact_method(None)), when=Status.ACCEPTED,
                   now=e.occurred_at, policy=policy)


async def on_check_in_recorded(conn: asyncpg.Connection, envelope: Envelope[CheckInRecorded], *,
                               policy: Policy) -> None:
    """A check-in that reached the person is contact: the case is not silent, nobody is alone."""
    e = envelope.data
    if e.result is CheckInResult.NOT_AT_HOME:
        return
    await move(conn, e.case_id, Action.CONTACT, Detail(method=contact_method(e.kind)), when=Status.ACCEPTED,
               now=e.occurred_at, policy=policy)
    # After `move`, which locks the referral and then the sheet: the same order as every other action.
    await conn.execute("UPDATE sheets SET last_contact_at = greatest(last_contact_at, $2) WHERE case_id = $1",
                       e.case_id, e.occurred_at)
