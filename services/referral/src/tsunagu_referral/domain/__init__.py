"""The referral domain: the referral state machine, business-day deadlines and the routing table."""
