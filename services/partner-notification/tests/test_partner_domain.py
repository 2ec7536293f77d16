"""Webhook retry rules, signatures and subscription matching, without infrastructure."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from tsunagu_contracts import (
    ConsultationRegistered, Envelope, Recipient, ReferralRequested, ReferralRerouted, ReferralSheetOpened, uuid7,
)
from tsunagu_partners.bootstrap import PartnerSettings
from tsunagu_partners.domain.routing import Wants
from tsunagu_partners.domain.webhooks import (
    RETRY_SCHEDULE_S, cloudevent_body, outcome, referral_asked_of, retry_after_seconds, retry_delay, signed_headers,
)
from tsunagu_partners.handlers.webhooks import DeliveryPolicy

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def example(event_type):
    return event_type.model_validate(event_type.model_json_schema()["examples"][0])


@pytest.mark.parametrize(("status", "result"), [(200, "delivered"), (204, "delivered"), (410, "gone"),
                                                (429, "retry"), (500, "retry"), (502, "retry"), (None, "retry")])
def test_two_hundreds_deliver_410_disables_everything_else_is_retried(status, result):
    assert outcome(status) == result


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert retry_after_seconds("120", NOW) == 120
    assert retry_after_seconds(format_datetime(NOW + timedelta(minutes=5), usegmt=True), NOW) == 300
    assert retry_after_seconds("soon", NOW) is None and retry_after_seconds(None, NOW) is None


MINUTE, HOUR = 60, 3600
STANDARD_WEBHOOKS_SCHEDULE = (5, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR)


def test_a_failed_delivery_is_retried_on_the_standard_webhooks_schedule_for_more_than_a_day():
    for attempt, step in enumerate(STANDARD_WEBHOOKS_SCHEDULE, start=1):
        assert 0.8 * step <= retry_delay(attempt, RETRY_SCHEDULE_S) <= 1.2 * step
    assert retry_delay(len(STANDARD_WEBHOOKS_SCHEDULE) + 1, RETRY_SCHEDULE_S) is None, "then a dead letter"
    assert DeliveryPolicy().max_attempts == 8, "at once, then after each of the seven waits"
    assert sum(RETRY_SCHEDULE_S) > 27 * HOUR


def test_retries_that_failed_together_are_spread_apart():
    assert len({retry_delay(3, RETRY_SCHEDULE_S) for _ in range(20)}) > 1


def test_retry_after_lengthens_a_wait_never_shortens_it_and_a_week_is_not_honoured():
    assert retry_delay(1, RETRY_SCHEDULE_S, retry_after=120) == 120
    assert retry_delay(2, RETRY_SCHEDULE_S, retry_after=1) >= 0.8 * 5 * MINUTE
    assert retry_delay(1, RETRY_SCHEDULE_S, retry_after=7 * 24 * HOUR) == 10 * HOUR
    assert retry_delay(1, (0.2, 0.2), retry_after=2) == 2, "the receiver's seconds are real, whatever the schedule"


def test_settings_can_shrink_the_schedule_for_tests_by_a_factor_or_by_listing_the_waits():
    scaled = PartnerSettings(retry_scale=0.001).delivery_policy()
    assert scaled.retry_schedule == pytest.approx([w / 1000 for w in STANDARD_WEBHOOKS_SCHEDULE])
    assert PartnerSettings(retry_schedule_s=[0.2, 0.2]).delivery_policy().max_attempts == 3


def test_a_lease_that_does_not_outlast_a_sends_deadline_is_refused():
    with pytest.raises(ValidationError, match="must outlast a send's deadline"):
        PartnerSettings(timeout_s=30, lease_s=30)
    with pytest.raises(ValueError, match="must outlast"):
        DeliveryPolicy(timeout_s=10, lease_s=11)
    assert PartnerSettings().lease_s > PartnerSettings().timeout_s


def test_a_dead_letter_names_the_referral_only_when_the_event_asked_this_partner_to_take_it():
    ours, theirs = uuid7(), uuid7()
    requested = example(ReferralRequested).model_copy(update={"recipient": Recipient.of_partner(ours)})
    rerouted = example(ReferralRerouted)

    def body(event) -> str:
        return cloudevent_body(Envelope(data=event, id=uuid7(), source="/tsunagu/referral"))

    assert referral_asked_of(body(requested), ours) == requested.referral_id
    assert referral_asked_of(body(requested), theirs) is None
    to_us = rerouted.model_copy(update={"new_recipient": Recipient.of_partner(ours)})
    assert referral_asked_of(body(to_us), ours) == to_us.new_referral_id
    away_from_us = rerouted.model_copy(update={"recipient": Recipient.of_partner(ours)})
    assert referral_asked_of(body(away_from_us), ours) is None, "told it lost a referral: nothing to move"
    assert referral_asked_of(body(example(ConsultationRegistered)), ours) is None


def test_a_signed_body_verifies_with_the_standard_webhooks_library():
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = cloudevent_body(Envelope(data=example(ReferralRequested), id=uuid7(), source="/tsunagu/referral"))
    headers = signed_headers(secret, "msg_1", body, datetime.now(UTC))
    assert Webhook(secret).verify(body, headers)["type"] == "tsunagu.referral.requested.v1"
    with pytest.raises(Exception):
        Webhook(secret).verify(body.replace("housing", "debt"), headers)


def test_a_subscription_matches_by_type_need_and_area():
    referral = example(ReferralRequested)  # need: housing, area 142166
    assert Wants(frozenset(), frozenset({"housing"}), frozenset({"142166"})).matches(referral, frozenset())
    assert not Wants(frozenset(), frozenset({"no_food"}), frozenset()).matches(referral, frozenset())
    assert not Wants(frozenset(), frozenset(), frozenset({"132012"})).matches(referral, frozenset())
    assert not Wants(frozenset({"tsunagu.referral.accepted.v1"}), frozenset(), frozenset()).matches(
        referral, frozenset())
    sheet = example(ReferralSheetOpened)  # no need of its own: the case's needs decide
    assert Wants(frozenset(), frozenset({"no_food"}), frozenset()).matches(sheet, frozenset({"no_food"}))
