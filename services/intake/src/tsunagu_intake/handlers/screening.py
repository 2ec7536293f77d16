"""The screening chart's suggestions, refused in both languages when the chart or a cue is unknown."""

from __future__ import annotations

from tsunagu_intake.domain.commands import ScreenCues
from tsunagu_intake.domain.screening import Chart, Suggestion, UnknownCue, charts, current_chart, suggest
from tsunagu_servicehost.errors import Rejected


def chart_named(version: str | None, *, field: str, message_en: str = "unknown chart version") -> Chart:
    """The chart of that version, or the current one when no version is given."""
    chart = charts().get(version) if version else current_chart()
    if chart is None:
        raise Rejected.invalid(field, "この版の相談チャートはありません。", message_en)
    return chart


def suggestions(chart: Chart, cues: list[str], *, field: str) -> list[Suggestion]:
    try:
        return suggest(chart, cues)
    except UnknownCue as exc:
        raise Rejected.invalid(field, "相談チャートにない気づきが含まれています。", str(exc)) from None


def screen(cmd: ScreenCues) -> tuple[Chart, list[Suggestion]]:
    chart = chart_named(cmd.chart_version, field="chart_version")
    return chart, suggestions(chart, cmd.cues, field="cues")
