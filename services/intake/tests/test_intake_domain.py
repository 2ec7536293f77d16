"""The screening chart, consultation commands and the duplicate key, without infrastructure."""

import pytest
from pydantic import ValidationError

from tsunagu_contracts import NeedCategory
from tsunagu_intake.adapters.crypto import PersonalDataCipher
from tsunagu_intake.domain.commands import EXAMPLE, NewPerson, RegisterConsultation, duplicate_key_text
from tsunagu_intake.domain.screening import UnknownCue, charts, current_chart, suggest


def test_the_chart_is_versioned_data_and_every_suggestion_is_a_national_form_category():
    chart = current_chart()
    assert chart.version in charts()
    assert all(s.need in NeedCategory for cue in chart.cues for s in cue.suggests)
    assert len({cue.code for cue in chart.cues}) == len(chart.cues)


def test_cues_suggest_needs_with_every_reason_and_the_most_suggested_first():
    suggestions = suggest(current_chart(), ["rent_arrears", "job_loss"])
    first = suggestions[0]
    assert first.need in {NeedCategory.INCOME, NeedCategory.RENT_LOAN}
    assert first.from_cues == ["rent_arrears", "job_loss"] and len(first.reasons_ja) == 2
    assert NeedCategory.JOB_SEARCH in {s.need for s in suggestions}


def test_an_unknown_cue_is_refused_by_name():
    with pytest.raises(UnknownCue, match="no_such_cue"):
        suggest(current_chart(), ["rent_arrears", "no_such_cue"])


def test_the_documented_example_is_a_valid_consultation():
    assert RegisterConsultation.model_validate(EXAMPLE).primary_need is NeedCategory.RENT_LOAN


@pytest.mark.parametrize(("change", "message"), [
    ({"primary_need": "no_food"}, "primary_need must be one of needs"),
    ({"person_ref": "0192f0c1-7a2e-7cc3-9a41-00000000aaaa"}, "either person"),
    ({"needs": ["housing", "housing"], "primary_need": "housing", "screening": None}, "must not repeat"),
])
def test_an_inconsistent_consultation_is_refused(change, message):
    with pytest.raises(ValidationError, match=message):
        RegisterConsultation.model_validate(EXAMPLE | change)


def test_the_same_person_typed_differently_gets_the_same_duplicate_key():
    a = NewPerson(name="座間 花子", name_kana="ざま はなこ", birth_date="1968-04-02")
    b = NewPerson(name="座間花子", name_kana="ザマ　ハナコ", birth_date="1968-04-02")
    c = NewPerson(name="座間 花子", name_kana="ざま はなこ", birth_date="1968-04-03")
    assert duplicate_key_text(a) == duplicate_key_text(b) != duplicate_key_text(c)


def test_personal_data_is_sealed_and_opened_only_with_the_key():
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed = PersonalDataCipher([old], b"index").seal({"name": "座間 花子"})
    rotated = PersonalDataCipher([new, old], b"index")
    assert "座間".encode() not in sealed
    assert rotated.open(sealed) == {"name": "座間 花子"}, "an old key still opens data after rotation"
    with pytest.raises(Exception):
        PersonalDataCipher([new], b"index").open(sealed)
