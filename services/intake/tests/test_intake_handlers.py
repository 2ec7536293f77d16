"""Intake's rules, on in-memory fakes: who a consultation belongs to, what a closed case refuses,
what consent and its withdrawal announce, how the referral view and a retried request behave."""

from datetime import UTC, datetime, timedelta

import pytest

from tsunagu_contracts import (
    CaseClosed, ConsentGranted, ConsentWithdrawn, ConsultationRegistered, NeedIdentified, ReferralDeclined,
    ReferralOverdue, ReferralRequested, ReferralRerouted, uuid7,
)
from tsunagu_contracts.codes import Division, NeedCategory
from tsunagu_intake.adapters.idempotency import once
from tsunagu_intake.domain.commands import EXAMPLE, GrantConsent, PersonKey, RegisterConsultation, ScreenCues
from tsunagu_intake.handlers import consents, consultations, referral_view, screening
from tsunagu_servicehost.errors import Rejected, Why

NOW = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
ZAMA = "142166"


async def register(uow, cipher, **changes):
    cmd = RegisterConsultation.model_validate({**EXAMPLE, **changes})
    return await consultations.register_consultation(uow, cmd, cipher=cipher, staff="counter-staff",
                                                     municipality_code=ZAMA, now=NOW)


def example_of(event_type, **fields):
    return event_type.model_validate({**event_type.model_json_schema()["examples"][0], **fields})


async def closed(uow, case_id):
    await referral_view.on_case_closed(uow, example_of(CaseClosed, case_id=str(case_id)))


async def test_a_new_person_s_consultation_opens_a_case_and_announces_consent_before_the_consultation(uow, cipher):
    done = await register(uow, cipher)

    granted, registered = uow.events
    assert isinstance(granted, ConsentGranted) and isinstance(registered, ConsultationRegistered)
    assert granted.consent_id == done.consent_ids[0] and registered.case_id == done.case_id
    assert not registered.known_person and registered.municipality_code == ZAMA
    assert uow.repo.persons[done.person_ref]["details"].startswith(b"sealed:"), "details are stored encrypted"


async def test_a_known_person_s_next_consultation_joins_the_case_still_open(uow, cipher):
    first = await register(uow, cipher)
    again = await register(uow, cipher, person=None, person_ref=str(first.person_ref), consents=[])

    assert again.case_id == first.case_id and again.consultation_id != first.consultation_id
    assert uow.of(ConsultationRegistered)[-1].known_person


async def test_after_the_case_is_closed_the_known_person_s_next_consultation_opens_a_new_case(uow, cipher):
    first = await register(uow, cipher)
    await closed(uow, first.case_id)
    again = await register(uow, cipher, person=None, person_ref=str(first.person_ref), consents=[])

    assert again.case_id != first.case_id


async def test_the_same_kana_name_and_birth_date_is_flagged_as_a_possible_duplicate_not_refused(uow, cipher):
    first = await register(uow, cipher)
    same_person_typed_in_katakana = {**EXAMPLE["person"], "name_kana": "ザマ　ハナコ"}
    second = await register(uow, cipher, person=same_person_typed_in_katakana)

    assert second.possible_duplicates == [first.person_ref] and second.person_ref != first.person_ref


async def test_staff_can_ask_before_registering_whether_the_same_kana_name_and_birth_date_is_known(uow, cipher):
    first = await register(uow, cipher)
    typed_in_katakana = PersonKey(name_kana="ザマ　ハナコ", birth_date=EXAMPLE["person"]["birth_date"])
    someone_else = PersonKey(name_kana="ざま はなこ", birth_date="1990-01-01")

    assert await consultations.possible_duplicates(uow.repo, typed_in_katakana, cipher=cipher) == [first.person_ref]
    assert await consultations.possible_duplicates(uow.repo, someone_else, cipher=cipher) == []
    assert len(uow.repo.persons) == 1, "asking registers nobody"


async def test_an_unknown_person_ref_is_refused_and_nothing_is_announced(uow, cipher):
    with pytest.raises(Rejected) as refused:
        await register(uow, cipher, person=None, person_ref=str(uuid7()))
    assert (refused.value.why, refused.value.field) == (Why.INVALID, "person_ref") and not uow.events


async def test_a_need_the_chart_did_not_suggest_cannot_be_confirmed(uow, cipher):
    with pytest.raises(Rejected) as refused:
        await register(uow, cipher, screening={"chart_version": "2026.1", "cues": ["rent_arrears"],
                                               "confirmed": ["health"]})
    assert refused.value.field == "screening.confirmed" and "health" in refused.value.message_en


def test_screening_refuses_an_unknown_chart_version_and_an_unknown_cue_by_field():
    with pytest.raises(Rejected) as no_chart:
        screening.screen(ScreenCues(cues=["rent_arrears"], chart_version="1999.1"))
    with pytest.raises(Rejected) as no_cue:
        screening.screen(ScreenCues(cues=["no_such_cue"]))
    assert (no_chart.value.field, no_cue.value.field) == ("chart_version", "cues")


async def test_a_need_is_added_once_to_the_latest_consultation_and_announced_each_time(uow, cipher):
    done = await register(uow, cipher)
    for _ in range(2):
        await consultations.identify_need(uow, done.case_id, NeedCategory.NO_FOOD, Division.LIVING_SUPPORT,
                                          via_screening=True, now=NOW)

    assert uow.repo.consultations[done.consultation_id]["needs"].count("no_food") == 1
    assert [e.consultation_id for e in uow.of(NeedIdentified)] == [done.consultation_id] * 2


async def test_a_closed_case_takes_no_further_need_and_no_further_consent(uow, cipher):
    done = await register(uow, cipher)
    await closed(uow, done.case_id)
    consent = GrantConsent.model_validate(GrantConsent.model_json_schema()["examples"][0])

    with pytest.raises(Rejected) as need_refused:
        await consultations.identify_need(uow, done.case_id, NeedCategory.NO_FOOD, Division.LIVING_SUPPORT,
                                          via_screening=False, now=NOW)
    with pytest.raises(Rejected) as consent_refused:
        await consents.grant_consent(uow, done.case_id, consent, now=NOW)
    assert need_refused.value.why is consent_refused.value.why is Why.CONFLICT


async def test_consent_for_an_unknown_case_is_not_found(uow):
    consent = GrantConsent.model_validate(GrantConsent.model_json_schema()["examples"][0])
    with pytest.raises(Rejected) as refused:
        await consents.grant_consent(uow, uuid7(), consent, now=NOW)
    assert refused.value.why is Why.NOT_FOUND


async def test_a_consent_is_withdrawn_once_and_the_withdrawal_names_its_recipient_and_purpose(uow, cipher):
    done = await register(uow, cipher)
    consent_id = done.consent_ids[0]
    await consents.withdraw_consent(uow, consent_id, now=NOW + timedelta(days=1))

    with pytest.raises(Rejected) as again:
        await consents.withdraw_consent(uow, consent_id, now=NOW + timedelta(days=2))
    withdrawn, = uow.of(ConsentWithdrawn)
    granted, = uow.of(ConsentGranted)
    assert (withdrawn.recipient, withdrawn.purpose) == (granted.recipient, granted.purpose)
    assert again.value.why is Why.CONFLICT


async def test_a_declined_referral_stays_declined_when_it_is_rerouted_and_a_repeated_request_changes_nothing(uow):
    case_id, referral_id = uuid7(), uuid7()
    ids = {"case_id": str(case_id), "referral_id": str(referral_id)}
    requested = example_of(ReferralRequested, **ids)
    await referral_view.on_referral_requested(uow, requested)
    await referral_view.on_referral_changed(uow, example_of(ReferralDeclined, **ids))
    await referral_view.on_referral_changed(uow, example_of(ReferralRerouted, **ids))
    await referral_view.on_referral_overdue(uow, example_of(ReferralOverdue, **ids))
    await referral_view.on_referral_requested(uow, requested)

    assert uow.repo.referrals[referral_id] == {"case_id": case_id, "need": requested.need, "status": "declined",
                                               "overdue": True}


async def test_a_retried_request_gets_the_first_answer_without_doing_the_work_again(uow):
    done = []

    async def work():
        done.append(1)
        return 201, {"case_id": "c1"}

    first = await once(uow.repo, "counter-staff", "key-1", b"body", work)
    retried = await once(uow.repo, "counter-staff", "key-1", b"body", work)
    assert first == retried == (201, {"case_id": "c1"}) and len(done) == 1


async def test_the_same_idempotency_key_with_another_body_or_too_long_is_refused(uow):
    async def work():
        return 201, {}

    await once(uow.repo, "counter-staff", "key-1", b"body", work)
    with pytest.raises(Rejected) as other_body:
        await once(uow.repo, "counter-staff", "key-1", b"another body", work)
    with pytest.raises(Rejected) as too_long:
        await once(uow.repo, "counter-staff", "k" * 201, b"body", work)
    assert other_body.value.field == too_long.value.field == "Idempotency-Key"


async def test_a_referral_rerouted_because_its_consent_was_withdrawn_shows_as_withdrawn_on_the_case(uow):
    referral_id = uuid7()
    ids = {"referral_id": str(referral_id), "case_id": str(uuid7())}
    await referral_view.on_referral_requested(uow, example_of(ReferralRequested, **ids))
    await referral_view.on_referral_changed(uow, example_of(ReferralRerouted, **ids, reason="consent_withdrawn"))

    assert uow.repo.referrals[referral_id]["status"] == "withdrawn"
