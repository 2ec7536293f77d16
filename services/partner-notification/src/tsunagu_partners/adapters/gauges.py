"""The partner-notification figures an operator watches, read from the database when /metrics is scraped."""

from __future__ import annotations

from tsunagu_servicehost import DatabaseGauge

GAUGES = (
    DatabaseGauge(
        "tsunagu_partners_webhooks_disabled",
        "Partners whose webhook endpoint is disabled (it answered 410); re-enabled by POST "
        "/v1/partners/{partner_id}/webhook/enable",
        "SELECT count(*) AS value FROM partners WHERE webhook_url IS NOT NULL AND webhook_disabled_at IS NOT NULL"),
    DatabaseGauge(
        "tsunagu_partners_held_events_oldest_age_seconds",
        "How long the oldest event held for a partner's consent has waited; 0 when none is held",
        "SELECT coalesce(extract(epoch FROM now() - min(held_at)), 0) AS value FROM held_events"),
    # Only rows the partial index deliveries_due covers: a scrape never reads the whole delivery log.
    DatabaseGauge(
        "tsunagu_webhook_deliveries_waiting",
        "Webhook deliveries not yet delivered: due or waiting for their next attempt (pending), or being sent",
        "SELECT status, count(*) AS value FROM deliveries WHERE status IN ('pending', 'sending') GROUP BY status",
        labels=("status",)),
    DatabaseGauge(
        "tsunagu_webhook_oldest_pending_age_seconds",
        "How long the oldest delivery not yet delivered (pending or sending) has waited; 0 when none waits",
        "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) AS value FROM deliveries "
        "WHERE status IN ('pending', 'sending')"),
)
