"""Tsunagu referral service: referral sheets, referrals and their state machine, timers and the routing table."""
