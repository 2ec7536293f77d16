"""Deadlines in Japanese business days: no weekends, national holidays, or the year-end closure.

City offices close from 29 December to 3 January (年末年始) besides the national holidays, which
come from the maintained `holidays` library. A deadline is the close of the counters on the Nth
business day after the referral was made.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
import holidays

from tsunagu_contracts.japan import JST
CLOSE_OF_BUSINESS = time(17, 15)


def is_business_day(day: date) -> bool:
    if day.weekday() >= 5:
        return False
    if (day.month == 12 and day.day >= 29) or (day.month == 1 and day.day <= 3):
        return False
    return day not in holidays.country_holidays("JP", years=day.year)


def add_business_days(start: date, n: int) -> date:
    day = start
    counted = 0
    while counted < n:
        day += timedelta(days=1)
        if is_business_day(day):
            counted += 1
    return day


def accept_deadline(requested_at: datetime, business_days: int) -> datetime:
    """Close of business on the Nth business day after the request (Japan time)."""
    local = requested_at.astimezone(JST)
    return datetime.combine(add_business_days(local.date(), business_days), CLOSE_OF_BUSINESS, tzinfo=JST)
