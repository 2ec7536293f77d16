"""The referral state machine, business-day deadlines and the routing table, without infrastructure."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from tsunagu_contracts.codes import NeedCategory
from tsunagu_referral.domain.deadlines import accept_deadline, add_business_days, is_business_day
from tsunagu_referral.domain.referral import Action, IllegalTransition, Status, next_status
from tsunagu_referral.domain.routing import FALLBACK, default_routes

JST = ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(("status", "action", "after"), [
    (Status.REQUESTED, Action.ACCEPT, Status.ACCEPTED),
    (Status.REQUESTED, Action.DECLINE, Status.DECLINED),
    (Status.ACCEPTED, Action.CONTACT, Status.CONTACT_MADE),
    (Status.CONTACT_MADE, Action.CONTACT, Status.CONTACT_MADE),
    (Status.CONTACT_MADE, Action.COMPLETE, Status.COMPLETED),
    (Status.ACCEPTED, Action.REROUTE, Status.REROUTED),
    (Status.REQUESTED, Action.MARK_UNREACHABLE, Status.UNREACHABLE),
])
def test_a_referral_moves_along_the_legal_transitions(status, action, after):
    assert next_status(status, action) is after


@pytest.mark.parametrize(("status", "action"), [
    (Status.REQUESTED, Action.COMPLETE), (Status.REQUESTED, Action.CONTACT), (Status.ACCEPTED, Action.ACCEPT),
    (Status.DECLINED, Action.ACCEPT), (Status.COMPLETED, Action.CONTACT), (Status.REROUTED, Action.ACCEPT),
    (Status.ACCEPTED, Action.MARK_UNREACHABLE), (Status.UNREACHABLE, Action.ACCEPT),
    (Status.UNREACHABLE, Action.MARK_UNREACHABLE),
])
def test_any_other_move_is_illegal(status, action):
    with pytest.raises(IllegalTransition):
        next_status(status, action)


def test_finished_referrals_are_not_active():
    assert not any(s.active for s in (Status.DECLINED, Status.COMPLETED, Status.REROUTED, Status.UNREACHABLE))


def test_weekends_national_holidays_and_the_year_end_closure_are_not_business_days():
    assert not is_business_day(date(2026, 11, 28))   # Saturday
    assert not is_business_day(date(2026, 11, 23))   # 勤労感謝の日
    assert not is_business_day(date(2026, 12, 29))   # 年末年始
    assert is_business_day(date(2027, 1, 4)), "the offices reopen on 4 January (a Monday)"
    assert is_business_day(date(2026, 11, 27))


def test_three_business_days_after_a_friday_before_a_holiday_weekend():
    # Fri 20 Nov 2026 -> Mon 23 is a holiday -> Tue 24, Wed 25, Thu 26.
    assert add_business_days(date(2026, 11, 20), 3) == date(2026, 11, 26)


def test_a_deadline_is_the_close_of_the_counters_in_japan_time():
    # Fri 25 Dec -> Mon 28 Dec, then closed 29 Dec to 3 Jan -> Mon 4 Jan, Tue 5 Jan.
    deadline = accept_deadline(datetime(2026, 12, 25, 16, 0, tzinfo=JST), 3)
    assert deadline == datetime(2027, 1, 5, 17, 15, tzinfo=JST)


def test_every_need_has_a_route_and_the_coordinator_is_the_last_resort():
    routes, fallback = default_routes()
    assert set(routes) == set(NeedCategory)
    assert all(routes[n] for n in NeedCategory)
    assert fallback == FALLBACK and FALLBACK.division.value == "self_reliance"
