"""Deadlines in Japanese business days: no weekends, national holidays, or the year-end closure.

City offices close from 29 December to 3 January (年末年始) besides the national holidays, which
come from the maintained `holidays` library. A deadline is the close of the counters on the Nth
business day after the referral was made.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache

import holidays

from tsunagu_contracts.japan import JST
CLOSE_OF_BUSINESS = time(17, 15)


def is_business_day(day: date) -> bool:
    if day.weekday() >= 5:
        return False
    if (day.month == 12 and day.day >= 29) or (day.month == 1 and day.day <= 3):
        return False
    return day not in _national_holidays(day.year)


@lru_cache(maxsize=16)
def _national_holidays(year: int) -> holidays.HolidayBase:
    """Japan's national holidays of one year, computed once: building them took a tenth of a
    millisecond per business day counted, for every referral."""
    return holidays.country_holidays("JP", years=year)


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


def follow_up_due_on(moment: datetime, business_days: int) -> date:
    """The Nth business day after a referral was accepted or completed (Japan time): the day the
    counter asks the person whether the help arrived."""
    return add_business_days(moment.astimezone(JST).date(), business_days)


def follow_up_answer_by(due_on: date, business_days: int) -> datetime:
    """Close of business `business_days` business days after the follow-up fell due: later, it is overdue."""
    return datetime.combine(add_business_days(due_on, business_days), CLOSE_OF_BUSINESS, tzinfo=JST)
