"""Days and moments as people and systems write them: text, never a number.

Pydantic reads a number as Unix time, so `0`, `"0"` or `"-7.5e-202"` would pass as 1970-01-01 (found
by fuzzing a query parameter). A day is `YYYY-MM-DD` and a moment RFC 3339 text; anything else is
refused with the error type the Japanese messages know (`date_parsing`, `datetime_parsing`).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator
from pydantic_core import PydanticCustomError

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _a_day(value: Any) -> Any:
    if isinstance(value, str) and not _DAY.fullmatch(value) or isinstance(value, int | float):
        raise PydanticCustomError("date_parsing", "Input should be a date written as YYYY-MM-DD")
    return value


def _a_moment(value: Any) -> Any:
    if isinstance(value, int | float) or isinstance(value, str) and _NUMBER.fullmatch(value):
        raise PydanticCustomError("datetime_parsing", "Input should be an RFC 3339 date and time, not a number")
    return value


CalendarDate = Annotated[date, BeforeValidator(_a_day)]
"""A day: `YYYY-MM-DD` text (or a `date`)."""

Moment = Annotated[AwareDatetime, BeforeValidator(_a_moment)]
"""A moment with its time zone: RFC 3339 text (or an aware `datetime`)."""
