"""What people read: Japanese labels from the contracts' code lists, and dates in Japan time.

The labels are the contracts' own (`LabelledCode.label_ja`), never a second copy. Dates are shown
in Japan time; where staff expect the Japanese calendar (birth dates, formal dates) it is beside
the Western year.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from tsunagu_contracts import codes
from tsunagu_contracts.japan import JST

# Every code list, by the name templates use: `label("NeedCategory", code)`.
CODE_LISTS: dict[str, type[codes.LabelledCode]] = {
    name: value for name, value in vars(codes).items()
    if isinstance(value, type) and issubclass(value, codes.LabelledCode) and value is not codes.LabelledCode}

# Start of each era (the first day), newest first.
_ERAS = ((date(2019, 5, 1), "令和"), (date(1989, 1, 8), "平成"), (date(1926, 12, 25), "昭和"),
         (date(1912, 7, 30), "大正"))

WEEKDAYS = "月火水木金土日"


def label(code_list: str, code: Any) -> str:
    """The Japanese label of a code, or the code itself when the list does not know it (a newer code)."""
    if code is None or code == "":
        return ""
    try:
        return CODE_LISTS[code_list](code).label_ja
    except (KeyError, ValueError):
        return str(code)


def options(code_list: str) -> list[tuple[str, str]]:
    """(code, Japanese label) of every code in a list, in the contracts' order: for a <select>."""
    return list(CODE_LISTS[code_list].labels().items())


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.astimezone(JST).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value:
        try:
            return _as_datetime(value).astimezone(JST).date() if "T" in value else date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and "T" in value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def wareki(value: Any) -> str:
    """`令和8年11月29日`; 元年 for an era's first year."""
    day = _as_date(value)
    if day is None:
        return ""
    for start, era in _ERAS:
        if day >= start:
            year = day.year - start.year + 1
            return f"{era}{'元' if year == 1 else year}年{day.month}月{day.day}日"
    return f"{day.year}年{day.month}月{day.day}日"


def japanese_date(value: Any, *, era: bool = False) -> str:
    """`2026年11月29日(日)`, with `（令和8年）` after the year when `era`."""
    day = _as_date(value)
    if day is None:
        return ""
    text = f"{day.year}年{day.month}月{day.day}日({WEEKDAYS[day.weekday()]})"
    return f"{text}（{wareki(day)}）" if era else text


def japanese_time(value: Any) -> str:
    """A moment in Japan time: `2026年11月29日(日) 14:05`."""
    moment = _as_datetime(value)
    if moment is None:
        return japanese_date(value)
    local = moment.astimezone(JST)
    return f"{japanese_date(local)} {local:%H:%M}"


def today() -> date:
    return datetime.now(JST).date()
