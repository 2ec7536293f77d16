"""The figures a coordinator reports, computed from plain rows: the same numbers Excel gives."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from tsunagu_contracts.japan import JST
from tsunagu_referral.domain.reports import (
    DECLINED, OVERDUE, REROUTED, UNSUPPORTED, Failure, Period, by_reason, by_reason_and_need, hours, median,
    needs_per_person, percentile, share,
)


def test_the_median_of_an_even_count_is_the_mean_of_the_two_middle_values():
    assert median([4, 1, 3, 2]) == 2.5


def test_the_median_of_an_odd_count_is_the_middle_value():
    assert median([7, 1, 3]) == 3


def test_the_90th_percentile_interpolates_between_ranks_as_excel_percentile_inc_does():
    assert percentile(list(range(1, 11)), 0.9) == pytest.approx(9.1)  # =PERCENTILE.INC({1..10}, 0.9)
    assert percentile([10, 20], 0.9) == pytest.approx(19)


def test_one_value_is_its_own_median_and_90th_percentile_and_no_value_gives_none():
    assert median([5.0]) == percentile([5.0], 0.9) == 5.0
    assert median([]) is None and percentile([], 0.9) is None


def test_durations_are_reported_in_hours_to_two_places():
    assert hours(5400) == 1.5 and hours(100) == 0.03 and hours(None) is None


def test_needs_per_person_counts_each_persons_distinct_needs_and_averages_over_people():
    assert needs_per_person({"a": ["housing", "debt", "housing"], "b": ["income"], "c": {"health", "family"}}) == (
        round(5 / 3, 2))


def test_needs_per_person_is_none_when_nobody_came_rather_than_zero():
    assert needs_per_person({}) is None


def test_a_share_is_a_fraction_to_three_places_and_none_of_nothing():
    assert share(2, 3) == 0.667 and share(0, 4) == 0 and share(0, 0) is None


def test_failures_are_grouped_by_stage_reason_and_need_most_frequent_first_with_japanese_labels():
    failures = [Failure(DECLINED, "capacity_full", "housing"), Failure(DECLINED, "capacity_full", "housing"),
                Failure(DECLINED, "capacity_full", "no_food"), Failure(OVERDUE, "overdue", "debt"),
                Failure(REROUTED, "partner_unreachable", "no_food"), Failure(UNSUPPORTED, "no_funds", "income")]

    rows = by_reason_and_need(failures)

    assert rows[0] == {"stage": "declined", "stage_label_ja": "辞退された", "reason": "capacity_full",
                       "reason_label_ja": "受け入れ枠がない", "need": "housing", "need_label_ja": "住まい", "count": 2}
    assert [(r["stage"], r["reason"], r["need"], r["count"]) for r in rows[1:]] == [
        ("completed_unsupported", "no_funds", "income", 1), ("declined", "capacity_full", "no_food", 1),
        ("overdue", "overdue", "debt", 1), ("rerouted", "partner_unreachable", "no_food", 1)]
    assert rows[3]["reason_label_ja"] == "期限内に受理されなかった"
    assert rows[4]["reason_label_ja"] == "連携団体に通知が届かなかったため"


def test_failures_grouped_by_reason_add_up_every_need():
    failures = [Failure(DECLINED, "outside_area", "housing"), Failure(DECLINED, "outside_area", "debt"),
                Failure(UNSUPPORTED, "could_not_reach", "debt")]

    assert [(r["reason"], r["count"]) for r in by_reason(failures)] == [("outside_area", 2), ("could_not_reach", 1)]


def test_a_period_is_whole_days_in_japan_time_with_both_ends_included():
    period = Period(date(2026, 11, 1), date(2026, 11, 30))

    assert period.starts == datetime(2026, 11, 1, tzinfo=JST)
    assert period.ends == datetime(2026, 12, 1, tzinfo=JST)
    assert Period().starts is None and Period().ends is None


def test_a_period_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError):
        Period(date(2026, 12, 1), date(2026, 11, 30))
