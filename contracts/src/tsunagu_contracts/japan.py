"""Japan time: consent validity, deadlines and "today" are decided in Asia/Tokyo, not UTC."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

JST = ZoneInfo("Asia/Tokyo")


def japan_date(moment: datetime) -> date:
    return moment.astimezone(JST).date()
