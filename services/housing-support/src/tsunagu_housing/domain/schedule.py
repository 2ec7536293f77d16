"""Check-in schedules (見守り): RFC 5545 recurrence rules evaluated in Japan time by dateutil.

Each rule keeps a cursor, `due_at`: the earliest occurrence neither answered nor reported missed.

- A check-in answers the cursor's occurrence when it falls in that occurrence's window: from
  halfway since the previous occurrence until the grace period after it ends. A visit on the
  9th answers the monthly visit due on the 10th; a call at 11:30 does not answer tomorrow's
  10:00 safety contact.
- When the grace period of the cursor's occurrence has passed, every occurrence whose grace has
  passed is reported as one miss (the latest, with how many), however long the service was
  stopped: a catch-up reports once, not once per missed tick.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from dateutil.rrule import rruleset, rrulestr

from tsunagu_contracts.codes import CheckInKind
from tsunagu_contracts.japan import JST

MAX_COUNTED = 10_000
"""Missed occurrences counted in one catch-up; a fine-grained rule after a long stop counts no further."""

_DTSTART = re.compile(r"^DTSTART(;TZID=(?P<tz>[^:;]+))?:(?P<value>\d{8}(T\d{6}Z?)?)$", re.MULTILINE)


class InvalidSchedule(ValueError):
    def __init__(self, message_en: str, message_ja: str):
        super().__init__(message_en)
        self.message_ja = message_ja


@dataclass(frozen=True)
class CheckInRule:
    kind: CheckInKind
    rrule: str
    grace: timedelta

    @cached_property
    def occurrences(self) -> rruleset:
        return parse(self.rrule)

    def first_due(self, now: datetime) -> datetime | None:
        """The first occurrence not before `now`: a new schedule holds nobody to its past."""
        return self.occurrences.after(now, inc=True)

    def window_opens(self, due: datetime) -> datetime:
        previous = self.occurrences.before(due)
        if previous is not None:
            return due - (due - previous) / 2
        following = self.occurrences.after(due)
        return due - ((following - due) / 2 if following is not None else timedelta(days=1))

    def answers(self, due: datetime, at: datetime) -> bool:
        return self.window_opens(due) <= at <= due + self.grace

    def after(self, due: datetime) -> datetime | None:
        return self.occurrences.after(due)

    def catch_up(self, due: datetime, now: datetime) -> "Missed | None":
        """The occurrences from `due` whose grace has passed by `now`, reported as one miss."""
        deadline = now - self.grace
        if due > deadline:
            return None
        missed = _until(self.occurrences, due, deadline)
        latest = missed[-1]
        return Missed(latest=latest, count=len(missed), next_due=self.occurrences.after(latest))

    def every_days(self, now: datetime) -> int | None:
        """Days between two occurrences from now, rounded up: what TenancyStarted announces."""
        first = self.first_due(now)
        second = self.occurrences.after(first) if first is not None else None
        if second is None:
            return None
        return max(1, math.ceil((second - first) / timedelta(days=1)))


@dataclass(frozen=True)
class Missed:
    latest: datetime
    count: int
    next_due: datetime | None


def _until(occurrences: rruleset, start: datetime, deadline: datetime) -> list[datetime]:
    found: list[datetime] = []
    for t in occurrences.xafter(start, count=MAX_COUNTED, inc=True):
        if t > deadline:
            break
        found.append(t)
    return found


def parse(text: str) -> rruleset:
    """A recurrence in Japan time: DTSTART (Asia/Tokyo when no zone is given) and RRULE lines."""
    text = text.strip().replace("\r\n", "\n")
    start = _DTSTART.search(text)
    if start is None:
        raise InvalidSchedule("the rule needs a DTSTART line, e.g. DTSTART;TZID=Asia/Tokyo:20261201T100000",
                              "開始日時（DTSTART）が必要です。例: DTSTART;TZID=Asia/Tokyo:20261201T100000")
    if start["tz"] is None and not start["value"].endswith("Z"):
        text = text.replace(start[0], f"DTSTART;TZID=Asia/Tokyo:{start['value']}", 1)
    elif start["tz"] not in (None, "Asia/Tokyo"):
        raise InvalidSchedule("give DTSTART in Japan time (TZID=Asia/Tokyo) or UTC",
                              "開始日時は日本時間（TZID=Asia/Tokyo）かUTCで指定してください。")
    if "RRULE:" not in text:
        raise InvalidSchedule("the rule needs an RRULE line, e.g. RRULE:FREQ=DAILY",
                              "繰り返し（RRULE）が必要です。例: RRULE:FREQ=DAILY")
    try:
        rules = rrulestr(text, forceset=True, unfold=True)
    except (ValueError, TypeError) as exc:
        raise InvalidSchedule(f"not an RFC 5545 recurrence rule: {exc}",
                              "繰り返しの指定（RFC 5545）が正しくありません。") from None
    if rules.after(datetime(1970, 1, 1, tzinfo=JST), inc=True) is None:
        raise InvalidSchedule("the rule has no occurrence", "この指定では見守りの予定が一度も生じません。")
    return rules
