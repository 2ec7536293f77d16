"""The housing-support figures an operator watches, read from the database when /metrics is scraped."""

from __future__ import annotations

from tsunagu_housing.adapters.views import TO_FOLLOW_UP
from tsunagu_servicehost import DatabaseGauge

GAUGES = (
    DatabaseGauge(
        "tsunagu_housing_check_ins_to_follow_up",
        "Missed or escalated check-ins no reassuring check-in has answered since (GET /v1/check-ins?missed=true), "
        "by reason",
        "SELECT CASE WHEN c.escalation IS NOT NULL THEN 'escalated' ELSE 'missed' END AS reason, count(*) AS value "
        f"FROM check_ins c JOIN supports s USING (support_id) WHERE {TO_FOLLOW_UP} GROUP BY 1",
        labels=("reason",)),
    DatabaseGauge(
        "tsunagu_housing_check_ins_late_unreported",
        "Check-ins past their occurrence and grace that the timer has not reported missed yet (0 within a timer "
        "interval while the timer runs)",
        "SELECT count(*) AS value FROM check_in_rules r JOIN supports s USING (support_id) "
        "WHERE r.due_at IS NOT NULL AND s.stage <> 'ended' "
        "AND r.due_at + make_interval(mins => r.grace_minutes) < now()"),
    DatabaseGauge(
        "tsunagu_housing_tasks_overdue",
        "Council members' tasks of open supports past their due date (Japan time) and not done",
        "SELECT count(*) AS value FROM tasks t JOIN supports s USING (support_id) WHERE t.done_at IS NULL "
        "AND t.due_on < (now() AT TIME ZONE 'Asia/Tokyo')::date AND s.stage <> 'ended'"),
)
