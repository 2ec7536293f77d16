"""Indexes behind a partner's inbox, `GET /v1/partners/{partner_id}/referrals` (0013).

`Referrals.addressed_to` pages through one partner's referrals newest first and, for each, looks up
the request delivered to that partner for the referral's case and the partner's last answer to the
referral. Without these, each page read the whole of `partner_referrals`, and each of its rows read
every delivery of the partner and every answer on record.

- `partner_referrals_by_partner`: the page (`partner_id = $1 AND referral_id < $2 ORDER BY
  referral_id DESC LIMIT $3`), read in index order.
- `deliveries_by_case`: the request delivered (`partner_id, case_id, event_type`), also the case's
  first delivery that `Deliveries.case_trace` looks for.
- `responses_by_referral`: the last answer (`referral_id, partner_id ORDER BY created_at DESC,
  response_id DESC LIMIT 1`), read in index order.
"""

from tsunagu_servicehost.migrations import run_sql

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    run_sql("""
    CREATE INDEX partner_referrals_by_partner ON partner_referrals (partner_id, referral_id DESC);
    CREATE INDEX deliveries_by_case ON deliveries (partner_id, case_id, event_type);
    CREATE INDEX responses_by_referral ON responses (referral_id, partner_id, created_at DESC, response_id DESC)
    """)
