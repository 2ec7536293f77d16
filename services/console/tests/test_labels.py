"""What people read: the contracts' own labels, and dates in Japan time and the Japanese calendar."""

from datetime import date

from tsunagu_console.domain.labels import japanese_date, japanese_time, label, options, wareki
from tsunagu_contracts.codes import NeedCategory


def test_labels_are_the_contracts_own():
    assert label("NeedCategory", "no_food") == NeedCategory.NO_FOOD.label_ja
    assert options("NeedCategory") == list(NeedCategory.labels().items())
    assert len(options("NeedCategory")) == 16


def test_a_code_the_list_does_not_know_is_shown_as_it_is():
    assert label("NeedCategory", "a_newer_code") == "a_newer_code"
    assert label("NeedCategory", None) == ""


def test_the_japanese_calendar_starts_each_era_on_its_first_day_with_gannen():
    assert wareki(date(2019, 4, 30)) == "平成31年4月30日"
    assert wareki(date(2019, 5, 1)) == "令和元年5月1日"
    assert wareki(date(2026, 11, 29)) == "令和8年11月29日"
    assert wareki("1968-04-02") == "昭和43年4月2日"
    assert wareki(date(1989, 1, 7)) == "昭和64年1月7日"


def test_a_moment_is_shown_in_japan_time_with_the_weekday():
    assert japanese_time("2026-11-29T15:30:00Z") == "2026年11月30日(月) 00:30"
    assert japanese_date("2026-11-29", era=True) == "2026年11月29日(日)（令和8年11月29日）"
    assert japanese_date("not a date") == ""
