"""A partner's answer is checked against where its referral stands, without infrastructure."""

import pytest

from tsunagu_contracts.codes import PartnerResponseKind as Answer
from tsunagu_partners.domain.answers import (
    AnswerRefused, reported_status_applies, status_after, status_when_undelivered,
)


@pytest.mark.parametrize(("status", "answer", "after"), [
    ("requested", Answer.ACCEPTED, "accepted"), ("requested", Answer.DECLINED, "declined"),
    ("accepted", Answer.CONTACT_MADE, "contact_made"), ("accepted", Answer.COMPLETED, "completed"),
    ("contact_made", Answer.CONTACT_MADE, "contact_made"), ("contact_made", Answer.COMPLETED, "completed")])
def test_an_answer_that_follows_the_referral_moves_it(status, answer, after):
    assert status_after(status, answer) == after


@pytest.mark.parametrize(("status", "answer", "ja", "en"), [
    ("requested", Answer.CONTACT_MADE, "先に「受理」", "answer accepted before contact_made"),
    ("requested", Answer.COMPLETED, "先に「受理」", "not accepted yet"),
    ("accepted", Answer.ACCEPTED, "すでに受理", "already accepted"),
    ("contact_made", Answer.ACCEPTED, "すでに受理", "already accepted"),
    ("accepted", Answer.DECLINED, "「受理」の紹介に「辞退」", "accepted referral cannot be answered declined"),
    ("completed", Answer.CONTACT_MADE, "終了しているか", "completed"),
    ("declined", Answer.ACCEPTED, "終了しているか", "declined"),
    ("rerouted", Answer.ACCEPTED, "他の紹介先", "rerouted"),
    ("unreachable", Answer.ACCEPTED, "他の紹介先", "unreachable")])
def test_an_answer_that_does_not_fit_is_refused_in_japanese_and_english(status, answer, ja, en):
    with pytest.raises(AnswerRefused) as refused:
        status_after(status, answer)
    assert ja in refused.value.message_ja and en in refused.value.message_en


def test_no_answer_is_taken_while_the_case_is_closed():
    with pytest.raises(AnswerRefused, match="the case is closed"):
        status_after("closed", Answer.CONTACT_MADE)


@pytest.mark.parametrize(("current", "reported", "applies"), [
    ("requested", "accepted", True),  # a coordinator accepted for the partner
    ("contact_made", "accepted", False),  # the partner's contact answer went further already
    ("completed", "contact_made", False),
    ("accepted", "accepted", True),
    ("accepted", "rerouted", True), ("contact_made", "rerouted", True),
    ("accepted", "declined", True),  # referral is the authority on what it did not apply
    ("declined", "accepted", True),
    ("declined", "rerouted", False),  # the need moves to a new referral; this one stays declined
    ("unreachable", "rerouted", True),
    ("unreachable", "accepted", True)])  # a coordinator accepted for the partner before the failure was applied
def test_referrals_events_move_the_copy_except_back_a_step_the_partner_took(current, reported, applies):
    assert reported_status_applies(current, reported) is applies


@pytest.mark.parametrize(("status", "after"), [
    ("requested", "unreachable"), ("accepted", "accepted"), ("declined", "declined"), ("rerouted", "rerouted"),
    ("closed", "closed")])
def test_an_undelivered_request_leaves_the_copy_unreachable_only_while_it_was_still_requested(status, after):
    assert status_when_undelivered(status) == after
