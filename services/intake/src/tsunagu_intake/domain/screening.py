"""The 相談チャート: cues staff notice, mapped to suggested needs with the reason.

The chart is data, not code: one JSON file per version under `charts/`. New versions are added
beside the old ones, so a consultation's recorded version always resolves.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tsunagu_contracts import NeedCategory

CHARTS = Path(__file__).resolve().parent / "charts"


class Suggests(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    need: NeedCategory
    reason_ja: str


class Cue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label_ja: str
    suggests: tuple[Suggests, ...] = Field(min_length=1)


class Chart(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    version: str = Field(pattern=r"^\d{4}\.\d{1,3}$")
    title_ja: str
    description: str
    cues: tuple[Cue, ...]

    def cue(self, code: str) -> Cue:
        for cue in self.cues:
            if cue.code == code:
                return cue
        raise KeyError(code)


class Suggestion(BaseModel):
    need: NeedCategory
    label_ja: str
    reasons_ja: list[str]
    from_cues: list[str]


@cache
def charts() -> dict[str, Chart]:
    loaded = {}
    for path in sorted(CHARTS.glob("*.json")):
        chart = Chart.model_validate_json(path.read_text())
        if chart.version != path.stem:
            raise ValueError(f"{path.name} declares version {chart.version}")
        loaded[chart.version] = chart
    return loaded


def current_chart() -> Chart:
    return charts()[max(charts(), key=lambda v: tuple(int(p) for p in v.split(".")))]


class UnknownCue(ValueError):
    pass


def suggest(chart: Chart, cues: list[str]) -> list[Suggestion]:
    """Needs suggested by the cues, most-suggested first, each with every reason."""
    by_need: dict[NeedCategory, Suggestion] = {}
    unknown = [c for c in cues if c not in {cue.code for cue in chart.cues}]
    if unknown:
        raise UnknownCue(f"cues not in chart {chart.version}: {', '.join(unknown)}")
    for code in dict.fromkeys(cues):
        for s in chart.cue(code).suggests:
            entry = by_need.setdefault(s.need, Suggestion(need=s.need, label_ja=s.need.label_ja, reasons_ja=[],
                                                          from_cues=[]))
            entry.reasons_ja.append(s.reason_ja)
            entry.from_cues.append(code)
    order = list(NeedCategory)
    return sorted(by_need.values(), key=lambda s: (-len(s.from_cues), order.index(s.need)))
