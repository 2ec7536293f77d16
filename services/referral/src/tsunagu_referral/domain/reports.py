"""The figures a coordinator reports, computed from rows of the read model: no I/O here.

Definitions, so that the city's spreadsheets and these figures agree:

- A period is whole days in Japan time, `from` and `to` included; either may be left open.
- Median and 90th percentile interpolate between the two nearest values, as Excel's MEDIAN and
  PERCENTILE.INC (and PostgreSQL's percentile_cont) do; durations are given in hours.
- Needs per person: for each person with a consultation in the period, the distinct needs found on
  their cases by the end of the period; the mean over those people (the city reports 3.88).
- Shares are fractions between 0 and 1, rounded to three places; none when nothing was counted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from tsunagu_contracts.codes import DeclineReason, NeedCategory, ReferralOutcome, RerouteReason
from tsunagu_contracts.japan import JST

CITY_NEEDS_PER_PERSON = 3.88
"""Problems per person the city's 断らない相談支援 counted (the seed's figure), to compare with."""


@dataclass(frozen=True)
class Period:
    """Whole days in Japan time, both ends included; None leaves that end open."""

    first: date | None = None
    last: date | None = None

    def __post_init__(self) -> None:
        if self.first and self.last and self.first > self.last:
            raise ValueError("the period ends before it starts")

    @property
    def starts(self) -> datetime | None:
        return datetime.combine(self.first, time(), JST) if self.first else None

    @property
    def ends(self) -> datetime | None:
        """The first instant after the period (exclusive)."""
        return datetime.combine(self.last + timedelta(days=1), time(), JST) if self.last else None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (Excel PERCENTILE.INC); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    below, above = math.floor(position), math.ceil(position)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 0.5)


def hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def needs_per_person(needs_by_person: Mapping[Hashable, Iterable[str]]) -> float | None:
    """Mean number of distinct needs per person; None when nobody came."""
    if not needs_by_person:
        return None
    return round(sum(len(set(needs)) for needs in needs_by_person.values()) / len(needs_by_person), 2)


# Why referrals fail ---------------------------------------------------------------------------

DECLINED, OVERDUE, REROUTED, UNSUPPORTED = "declined", "overdue", "rerouted", "completed_unsupported"
STAGES = {
    DECLINED: "辞退された",
    OVERDUE: "期限内に受理されなかった",
    REROUTED: "他の紹介先へつなぎ直した",
    UNSUPPORTED: "支援につながらずに終了した",
}
"""How a referral failed the person, with what a coordinator reads."""

_REASONS = {DECLINED: DeclineReason, REROUTED: RerouteReason, UNSUPPORTED: ReferralOutcome}


@dataclass(frozen=True)
class Failure:
    """One referral that failed at one stage, for one reason (a code of that stage's list)."""

    stage: str
    reason: str
    need: str


def reason_label(stage: str, reason: str) -> str:
    codes = _REASONS.get(stage)
    return codes(reason).label_ja if codes else STAGES[stage]


def by_reason_and_need(failures: Iterable[Failure]) -> list[dict]:
    """Counts per (stage, reason, need), the most frequent first; ties in code order, so the same
    failures always give the same rows."""
    counted = Counter(failures)
    rows = sorted(counted.items(), key=lambda item: (-item[1], item[0].stage, item[0].reason, item[0].need))
    return [{"stage": f.stage, "stage_label_ja": STAGES[f.stage], "reason": f.reason,
             "reason_label_ja": reason_label(f.stage, f.reason), "need": f.need,
             "need_label_ja": NeedCategory(f.need).label_ja, "count": n} for f, n in rows]


def by_reason(failures: Iterable[Failure]) -> list[dict]:
    """Counts per (stage, reason) over every need, the most frequent first."""
    counted = Counter((f.stage, f.reason) for f in failures)
    rows = sorted(counted.items(), key=lambda item: (-item[1], *item[0]))
    return [{"stage": stage, "stage_label_ja": STAGES[stage], "reason": reason,
             "reason_label_ja": reason_label(stage, reason), "count": n} for (stage, reason), n in rows]
