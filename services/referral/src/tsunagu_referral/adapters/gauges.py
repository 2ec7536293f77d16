"""The referral figures an operator watches, read from the database when /metrics is scraped."""

from __future__ import annotations

from tsunagu_servicehost import DatabaseGauge

GAUGES = (
    DatabaseGauge(
        "tsunagu_referrals_overdue",
        "Referrals still waiting for the recipient's answer after their deadline (accept_by)",
        # Overdue whether or not the timer has reported it yet (ReferralOverdue): served by referrals_by_status.
        "SELECT count(*) AS value FROM referrals WHERE status = 'requested' AND accept_by < now()"),
    DatabaseGauge(
        "tsunagu_referrals_unreachable",
        "Referrals whose request never reached the partner (its deliveries failed); coordinators see them first",
        "SELECT count(*) AS value FROM referrals WHERE status = 'unreachable'"),
    DatabaseGauge(
        "tsunagu_cases_without_contact",
        "Open cases reported for going without contact (CaseContactOverdue) and still without contact since",
        "SELECT count(*) AS value FROM sheets WHERE closed_at IS NULL AND contact_overdue_at IS NOT NULL "
        "AND contact_overdue_at >= coalesce(last_contact_at, opened_at)"),
)
