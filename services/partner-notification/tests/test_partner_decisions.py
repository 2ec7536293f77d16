"""Who may act on a referral and how an answer moves it, decided on in-memory fakes (conftest.py)."""

from datetime import UTC, date, datetime

import pytest

from tsunagu_contracts import PartnerResponded, uuid7
from tsunagu_contracts.codes import PartnerResponseKind as Answer
from tsunagu_partners.domain.commands import RespondToReferral
from tsunagu_servicehost.errors import Rejected, Why
from tsunagu_servicehost.errors import Refused
from tsunagu_partners.handlers.access import check_referral
from tsunagu_partners.handlers.responses import respond as respond_to

TODAY = date(2026, 11, 27)
NOW = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
NO_CONSENT = {"refused_ja": "同意がありません。", "refused_en": "no consent"}


@pytest.fixture
def partner():
    return uuid7()


@pytest.fixture
def store(repo):
    return repo.tables


@pytest.fixture
def referral(store, partner):
    referral_id, case_id = uuid7(), uuid7()
    store.add_referral(referral_id, partner, case_id, need="housing")
    return referral_id


def case_of(store, referral_id):
    return store.referrals[referral_id]["case_id"]


async def why_refused(repo, partner_id, referral_id) -> Why:
    with pytest.raises(Rejected) as refusal:
        await check_referral(repo.access, partner_id, referral_id, today=TODAY, **NO_CONSENT)
    return refusal.value.why


async def test_a_referral_addressed_to_another_partner_is_not_found_so_its_id_reveals_nothing(repo, store, referral):
    store.add_grant(case_of(store, referral), uuid7(), "consent", "referral")
    assert await why_refused(repo, uuid7(), referral) is Why.NOT_FOUND


@pytest.mark.parametrize("status", ["closed", "declined", "completed", "rerouted"])
async def test_a_referral_that_left_the_partner_or_whose_case_closed_is_forbidden(
        repo, store, partner, referral, status):
    store.add_grant(case_of(store, referral), partner, "consent", "referral")
    store.referrals[referral]["status"] = status
    assert await why_refused(repo, partner, referral) is Why.FORBIDDEN


async def test_without_any_permission_the_callers_own_refusal_is_given(repo, store, partner, referral):
    with pytest.raises(Rejected) as refusal:
        await check_referral(repo.access, partner, referral, today=TODAY, **NO_CONSENT)
    assert (refusal.value.why, refusal.value.message_en) == (Why.FORBIDDEN, "no consent")


async def test_a_consent_for_another_purpose_is_named_in_the_refusal(repo, store, partner, referral):
    store.add_grant(case_of(store, referral), partner, "consent", "check_in")
    with pytest.raises(Rejected) as refusal:
        await check_referral(repo.access, partner, referral, today=TODAY, **NO_CONSENT)
    assert "check_in" in refusal.value.message_en and "安否確認" not in refusal.value.message_ja
    assert "居住支援" in refusal.value.message_ja, "the Japanese names the purposes the referral needs"


async def test_an_expired_or_withdrawn_consent_lets_nothing_through(repo, store, partner, referral):
    store.add_grant(case_of(store, referral), partner, "consent", "referral", valid_until=date(2026, 11, 26))
    store.add_grant(case_of(store, referral), partner, "consent", "housing_support", revoked=True)
    with pytest.raises(Rejected) as refusal:
        await check_referral(repo.access, partner, referral, today=TODAY, **NO_CONSENT)
    assert refusal.value.message_en == "no consent"


async def test_the_consent_for_the_needs_own_support_is_preferred_to_one_for_referral_and_to_a_basis(
        repo, store, partner, referral):
    case_id = case_of(store, referral)
    store.add_grant(case_id, partner, "support_conference_swa_106_6", "referral")
    store.add_grant(case_id, partner, "consent", "referral")
    store.add_grant(case_id, partner, "consent", "housing_support")
    _, grant = await check_referral(repo.access, partner, referral, today=TODAY, **NO_CONSENT)
    assert (grant["basis"], grant["purpose"]) == ("consent", "housing_support")


async def test_a_statutory_basis_is_enough_for_any_referral(repo, store, partner, referral):
    store.add_grant(case_of(store, referral), partner, "support_conference_swa_106_6", "check_in")
    found, grant = await check_referral(repo.access, partner, referral, today=TODAY, **NO_CONSENT)
    assert found["case_id"] == case_of(store, referral) and grant["basis"] == "support_conference_swa_106_6"


def test_each_refusal_has_one_http_status():
    assert [Refused.of(Rejected(why, "ja", "en")).status for why in Why] == [404, 409, 403, 422]


async def respond(uow, partner, referral, response: str, **body):
    return await respond_to(uow, partner, referral, RespondToReferral(response=response, **body), now=NOW)


async def test_an_accepted_answer_moves_the_referral_and_is_published_once(uow, store, partner, referral):
    store.add_grant(case_of(store, referral), partner, "consent", "referral")
    response_id = await respond(uow, partner, referral, "accepted")
    assert store.referrals[referral]["status"] == "accepted"
    [event] = uow.events
    assert isinstance(event, PartnerResponded) and event.response_id == response_id
    assert event.response is Answer.ACCEPTED and event.case_id == case_of(store, referral)


async def test_an_answer_that_does_not_fit_is_a_conflict_and_changes_nothing(uow, store, partner, referral):
    store.add_grant(case_of(store, referral), partner, "consent", "referral")
    with pytest.raises(Rejected) as refusal:
        await respond(uow, partner, referral, "contact_made", contact_method="phone")
    assert refusal.value.why is Why.CONFLICT
    assert store.referrals[referral]["status"] == "requested" and not store.responses and not uow.events


async def test_an_answer_after_the_consent_was_withdrawn_is_forbidden_and_changes_nothing(
        uow, store, partner, referral):
    store.add_grant(case_of(store, referral), partner, "consent", "referral", revoked=True)
    with pytest.raises(Rejected) as refusal:
        await respond(uow, partner, referral, "accepted")
    assert refusal.value.why is Why.FORBIDDEN and "withdrawn" in refusal.value.message_en
    assert store.referrals[referral]["status"] == "requested" and not uow.events


async def test_an_answer_whose_details_do_not_fit_its_kind_is_invalid(uow, store, partner, referral):
    store.add_grant(case_of(store, referral), partner, "consent", "referral")
    with pytest.raises(Rejected) as refusal:
        await respond(uow, partner, referral, "declined")
    assert (refusal.value.why, refusal.value.field) == (Why.INVALID, "response")
    assert not store.responses and not uow.events


async def test_an_answer_to_a_referral_addressed_elsewhere_is_not_found(uow, store, partner, referral):
    with pytest.raises(Rejected) as refusal:
        await respond(uow, uuid7(), referral, "accepted")
    assert refusal.value.why is Why.NOT_FOUND
