"""Webhook retry rules, signatures and subscription matching, without infrastructure."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from tsunagu_contracts import ReferralRequested, ReferralSheetOpened, Envelope, uuid7
from tsunagu_partners.bootstrap import PartnerSettings
from tsunagu_partners.domain.routing import Wants
from tsunagu_partners.domain.webhooks import backoff, cloudevent_body, outcome, retry_after_seconds, signed_headers
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


def test_backoff_doubles_with_jitter_and_stops_at_the_ceiling():
    for attempt, base in ((1, 5), (2, 10), (3, 20)):
        assert base / 2 <= backoff(attempt, 5, 3600) <= base
    assert backoff(30, 5, 3600) <= 3600


def test_a_lease_that_does_not_outlast_a_sends_deadline_is_refused():
    with pytest.raises(ValidationError, match="must outlast a send's deadline"):
        PartnerSettings(timeout_s=30, lease_s=30)
    with pytest.raises(ValueError, match="must outlast"):
        DeliveryPolicy(timeout_s=10, lease_s=11)
    assert PartnerSettings().lease_s > PartnerSettings().timeout_s


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
