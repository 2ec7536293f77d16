"""Mail notices are deliveries too (0009).

A partner without a webhook hears of each referral addressed to it by e-mail: a delivery on the
`email` channel, queued in the fan-out's transaction like a webhook's and sent by the mail sender.
`referral_id` is the referral the notice is about; the partial unique index makes one mail per
referral per partner a rule of the table, whatever events (or redeliveries of them) ask for it.
"""

from tsunagu_servicehost.migrations import run_sql

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    run_sql("""
    ALTER TABLE deliveries ADD COLUMN channel text NOT NULL DEFAULT 'webhook';
    ALTER TABLE deliveries ADD COLUMN referral_id uuid;
    CREATE UNIQUE INDEX deliveries_one_mail_per_referral ON deliveries (partner_id, referral_id)
        WHERE channel = 'email'
    """)
