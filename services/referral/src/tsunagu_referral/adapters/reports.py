"""Every SQL statement of the report read model (tables `report_*`, migration 0006).

Who writes, and the concurrency rules:

- The projection, in every instance of the service, in the transaction that makes or applies each
  event: referral's own events as a unit of work appends them to the outbox, intake's and partners'
  as the service's consumers apply them. Each event is applied once, in the transaction that
  records its id in `applied_events` under the name `referral-reports`.
- The rebuild (`rebuild-reports`): empties the tables and applies the whole log (and the service's
  own events not yet published) again, through the same statements, while the service may run.

Every projection transaction takes the reports lock shared, and the rebuild's reset takes it
exclusively: a reset waits for the events being applied and holds back the next ones until it
commits, so no event is half in the old tables and half in the new. An event the live projection
and the rebuild apply at once is applied once: both insert its id into `applied_events`, and the second
waits for the first and finds it there.

Each write is keyed by an id the event carries (or the event's own id), so the two writers never
lose each other's work; the rules beside each statement say how rows built from several events
stay the same whichever order those events arrive in.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from tsunagu_outbox.locks import holds, took

from tsunagu_referral.domain.reports import DECLINED, OVERDUE, REROUTED, UNSUPPORTED, Failure, Period

CONSUMER = "referral-reports"
"""`applied_events.consumer` of the projection: the events the read model has applied."""

TABLES = ("report_consultations", "report_case_needs", "report_referrals", "report_case_closures",
          "report_delivery_failures", "report_follow_ups")

LOCK_KEY = "tsunagu.referral.reports"
"""Named advisory lock between the projection (shared) and the rebuild's reset (exclusive)."""

REFERRAL_FACTS = {
    # column: how a later event's value meets the one already there
    "need": "coalesce(report_referrals.need, EXCLUDED.need)",
    "requested_at": "coalesce(report_referrals.requested_at, EXCLUDED.requested_at)",
    "first_answer_at": "least(report_referrals.first_answer_at, EXCLUDED.first_answer_at)",
    "accepted_at": "least(report_referrals.accepted_at, EXCLUDED.accepted_at)",
    "declined_at": "least(report_referrals.declined_at, EXCLUDED.declined_at)",
    "decline_reason": "coalesce(report_referrals.decline_reason, EXCLUDED.decline_reason)",
    "overdue_at": "least(report_referrals.overdue_at, EXCLUDED.overdue_at)",
    "rerouted_at": "least(report_referrals.rerouted_at, EXCLUDED.rerouted_at)",
    "reroute_reason": "coalesce(report_referrals.reroute_reason, EXCLUDED.reroute_reason)",
    "completed_at": "least(report_referrals.completed_at, EXCLUDED.completed_at)",
    "outcome": "coalesce(report_referrals.outcome, EXCLUDED.outcome)",
}
"""least() and coalesce() ignore NULLs, so each event fills only its own columns, and a referral's
events give the same row in any order (a replayed dead letter may come after later events)."""


def _within(column: str) -> str:
    """Rows whose `column` is set and falls in the period. The bounds are always $1 (first instant)
    and $2 (first instant after); NULL leaves that end open."""
    return (f"({column} IS NOT NULL AND ($1::timestamptz IS NULL OR {column} >= $1) "
            f"AND ($2::timestamptz IS NULL OR {column} < $2))")


class ReportsStore:
    """The read model, written inside the caller's transaction (or none, for reads)."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    # writing ------------------------------------------------------------------------------------

    async def hold_off_rebuild(self) -> None:
        """First in every projection transaction (rule at the top); once in a batch's."""
        if holds(LOCK_KEY):
            return
        await self.conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext($1))", LOCK_KEY)
        took(LOCK_KEY)

    async def reset(self) -> None:
        """Empty the read model and forget which events it applied, in the caller's transaction."""
        # Exclusive: waits for projection transactions under way, and holds back new ones until commit.
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", LOCK_KEY)
        await self.conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        await self.conn.execute("DELETE FROM applied_events WHERE consumer = $1", CONSUMER)

    async def mark_all_applied(self, event_ids: list[UUID]) -> list[UUID]:
        """Record the events as applied by the projection; returns those not applied before. Inserted
        in sorted order, so two writers of overlapping ids take their locks in the same order."""
        rows = await self.conn.fetch(
            "INSERT INTO applied_events (consumer, event_id) SELECT $1, id FROM unnest($2::uuid[]) AS id "
            "ORDER BY id ON CONFLICT DO NOTHING RETURNING event_id", CONSUMER, event_ids)
        return [row["event_id"] for row in rows]

    async def add_consultation(self, consultation_id: UUID, case_id: UUID, person_ref: UUID, at: datetime) -> None:
        # Keyed by the consultation: a second insert of it (never expected) changes nothing.
        await self.conn.execute(
            "INSERT INTO report_consultations (consultation_id, case_id, person_ref, registered_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", consultation_id, case_id, person_ref, at)

    async def add_needs(self, case_id: UUID, needs: list[str], at: datetime) -> None:
        # One row per case and need, the earliest time it was found: the row lock ON CONFLICT takes
        # and least() make a consultation and a need found later meet in the same row in any order.
        await self.conn.executemany(
            "INSERT INTO report_case_needs (case_id, need, first_identified_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (case_id, need) DO UPDATE SET first_identified_at = "
            "least(report_case_needs.first_identified_at, EXCLUDED.first_identified_at)",
            # Sorted: two transactions on one case lock its need rows in the same order.
            [(case_id, need, at) for need in sorted(needs)])

    async def record_referral(self, referral_id: UUID, case_id: UUID, recipient: tuple[str, str],
                              **facts: object) -> None:
        """Upsert the referral's row with the facts one event brings (columns of REFERRAL_FACTS)."""
        columns = list(facts)
        unknown = set(columns) - set(REFERRAL_FACTS)
        if unknown:
            raise ValueError(f"not a referral fact: {sorted(unknown)}")
        names = ", ".join(["referral_id", "case_id", "recipient_kind", "recipient", *columns])
        values = ", ".join(f"${i}" for i in range(1, len(columns) + 5))
        updates = ", ".join(f"{c} = {REFERRAL_FACTS[c]}" for c in columns) or "referral_id = EXCLUDED.referral_id"
        # ON CONFLICT … DO UPDATE locks the row; with least()/coalesce() (REFERRAL_FACTS) the order
        # in which two writers reach it does not matter.
        await self.conn.execute(
            f"INSERT INTO report_referrals ({names}) VALUES ({values}) "
            f"ON CONFLICT (referral_id) DO UPDATE SET {updates}",
            referral_id, case_id, *recipient, *facts.values())

    async def add_closure(self, event_id: UUID, case_id: UUID, at: datetime, reason: str) -> None:
        # Keyed by the CaseClosed event itself: a case closed, reopened and closed again has two rows.
        await self.conn.execute(
            "INSERT INTO report_case_closures (event_id, case_id, closed_at, reason) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT DO NOTHING", event_id, case_id, at, reason)

    async def add_delivery_failure(self, delivery_id: UUID, partner_id: UUID, referral_id: UUID | None,
                                   at: datetime) -> None:
        # Keyed by the delivery: one row per delivery that failed for good.
        await self.conn.execute(
            "INSERT INTO report_delivery_failures (delivery_id, partner_id, referral_id, failed_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", delivery_id, partner_id, referral_id, at)

    async def add_follow_up_answer(self, follow_up_id: UUID, case_id: UUID, referral_id: UUID, need: str,
                                   outcome: str, at: datetime) -> None:
        # Keyed by the follow-up: it is answered once.
        await self.conn.execute(
            "INSERT INTO report_follow_ups (follow_up_id, case_id, referral_id, need, outcome, answered_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            follow_up_id, case_id, referral_id, need, outcome, at)

    # reading ------------------------------------------------------------------------------------

    async def consultations(self, period: Period) -> asyncpg.Record:
        return await self.conn.fetchrow(
            "SELECT count(*) AS consultations, count(DISTINCT person_ref) AS people FROM report_consultations "
            f"WHERE {_within('registered_at')}", period.starts, period.ends)

    async def needs_of_people(self, period: Period) -> dict[UUID, set[str]]:
        """Each person with a consultation in the period → the needs found on their cases by its end."""
        rows = await self.conn.fetch(
            "SELECT DISTINCT c.person_ref, n.need FROM report_consultations c "
            "JOIN report_case_needs n ON n.case_id = c.case_id "
            "WHERE c.person_ref IN (SELECT person_ref FROM report_consultations "
            f"                      WHERE {_within('registered_at')}) "
            "AND ($2::timestamptz IS NULL OR (c.registered_at < $2 AND n.first_identified_at < $2))",
            period.starts, period.ends)
        needs: dict[UUID, set[str]] = {}
        for row in rows:
            needs.setdefault(row["person_ref"], set()).add(row["need"])
        return needs

    async def referrals_requested(self, period: Period) -> list[asyncpg.Record]:
        """Referrals asked in the period, counted by need and recipient."""
        return await self.conn.fetch(
            "SELECT need, recipient_kind, recipient, count(*) AS referrals FROM report_referrals "
            f"WHERE {_within('requested_at')} GROUP BY need, recipient_kind, recipient "
            "ORDER BY need, recipient_kind, recipient", period.starts, period.ends)

    async def seconds_to_acceptance(self, period: Period) -> list[float]:
        """For each referral asked in the period and accepted (whenever): seconds from asking to acceptance."""
        rows = await self.conn.fetch(
            "SELECT extract(epoch FROM accepted_at - requested_at)::float8 AS seconds FROM report_referrals "
            f"WHERE {_within('requested_at')} AND accepted_at IS NOT NULL", period.starts, period.ends)
        return [r["seconds"] for r in rows]

    async def completions(self, period: Period) -> asyncpg.Record:
        return await self.conn.fetchrow(
            "SELECT count(*) AS completed, count(*) FILTER (WHERE outcome = 'supported') AS supported "
            f"FROM report_referrals WHERE {_within('completed_at')}", period.starts, period.ends)

    async def follow_up_answers(self, period: Period) -> asyncpg.Record:
        return await self.conn.fetchrow(
            "SELECT count(*) AS answered, count(*) FILTER (WHERE outcome = 'reached_helped') AS helped "
            f"FROM report_follow_ups WHERE {_within('answered_at')}", period.starts, period.ends)

    async def cases_closed(self, period: Period) -> int:
        return await self.conn.fetchval(
            f"SELECT count(DISTINCT case_id) FROM report_case_closures WHERE {_within('closed_at')}",
            period.starts, period.ends)

    async def recipients(self, period: Period) -> list[asyncpg.Record]:
        """Per recipient, the referrals asked of it in the period and what became of them."""
        return await self.conn.fetch(
            "SELECT recipient_kind, recipient, count(*) AS received, count(accepted_at) AS accepted, "
            "count(declined_at) AS declined, count(overdue_at) AS overdue, "
            "coalesce(array_agg(extract(epoch FROM first_answer_at - requested_at)::float8) "
            "         FILTER (WHERE first_answer_at IS NOT NULL), '{}') AS seconds_to_first_answer "
            f"FROM report_referrals WHERE {_within('requested_at')} "
            "GROUP BY recipient_kind, recipient", period.starts, period.ends)

    async def decline_reasons(self, period: Period) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT recipient_kind, recipient, decline_reason, count(*) AS declined FROM report_referrals "
            f"WHERE {_within('requested_at')} AND declined_at IS NOT NULL "
            "GROUP BY recipient_kind, recipient, decline_reason", period.starts, period.ends)

    async def delivery_failures(self, period: Period) -> dict[UUID, int]:
        rows = await self.conn.fetch(
            "SELECT partner_id, count(*) AS failed FROM report_delivery_failures "
            f"WHERE {_within('failed_at')} GROUP BY partner_id", period.starts, period.ends)
        return {r["partner_id"]: r["failed"] for r in rows}

    async def failures(self, period: Period) -> list[Failure]:
        """Every way a referral failed in the period: declined, overdue, moved on for another reason
        than a decline (that one is counted as the decline), or completed without support."""
        rows = await self.conn.fetch(
            f"SELECT '{DECLINED}' AS stage, decline_reason AS reason, need FROM report_referrals "
            f"WHERE need IS NOT NULL AND {_within('declined_at')} "
            f"UNION ALL SELECT '{OVERDUE}', 'overdue', need FROM report_referrals "
            f"WHERE need IS NOT NULL AND {_within('overdue_at')} "
            f"UNION ALL SELECT '{REROUTED}', reroute_reason, need FROM report_referrals "
            f"WHERE need IS NOT NULL AND reroute_reason <> 'declined' AND {_within('rerouted_at')} "
            f"UNION ALL SELECT '{UNSUPPORTED}', outcome, need FROM report_referrals "
            f"WHERE need IS NOT NULL AND outcome <> 'supported' AND {_within('completed_at')}",
            period.starts, period.ends)
        return [Failure(r["stage"], r["reason"], r["need"]) for r in rows]
