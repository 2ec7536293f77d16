"""The first contracts: need codes, an event that refuses personal data, and the topic registry."""

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tsunagu_contracts import TOPICS, ConsultationRegistered, NeedCategory, topic_for_event

NATIONAL_FORM_CODES = {
    "health", "housing", "income", "rent_loan", "tax_utilities", "debt", "job_search", "work_trouble",
    "community", "family", "childcare", "elder_care", "withdrawal", "abuse_dv", "no_food", "other",
}


def a_consultation(**overrides) -> dict:
    return {"case_id": uuid.uuid4(), "municipality_code": "142166", "occurred_at": datetime.now(UTC),
            "consultation_id": uuid.uuid4(), "person_ref": uuid.uuid4(), "needs": ["housing"], **overrides}


def test_need_categories_are_exactly_the_sixteen_boxes_of_the_national_form_with_japanese_labels():
    assert {c.value for c in NeedCategory} == NATIONAL_FORM_CODES
    assert NeedCategory.HOUSING.label_ja == "住まい"
    assert all(c.label_ja for c in NeedCategory)


def test_an_event_refuses_a_field_it_does_not_declare_such_as_a_name():
    with pytest.raises(ValidationError) as error:
        ConsultationRegistered(**a_consultation(name="山田太郎"))
    assert error.value.errors()[0]["loc"] == ("name",)


@pytest.mark.parametrize("bad", [{"municipality_code": "14216"}, {"needs": []}, {"needs": ["rent"]}])
def test_an_event_with_a_bad_value_is_refused_naming_the_field(bad):
    with pytest.raises(ValidationError) as error:
        ConsultationRegistered(**a_consultation(**bad))
    assert error.value.errors()[0]["loc"][0] == next(iter(bad))


def test_every_topic_name_is_unique_and_every_event_has_exactly_one_topic():
    names = [t.name for t in TOPICS]
    assert len(names) == len(set(names))
    carried = [e for t in TOPICS for e in t.events]
    assert len(carried) == len(set(carried))
    assert topic_for_event(ConsultationRegistered).name == "tsunagu.intake.cases.v1"


def test_every_consuming_service_has_a_dead_letter_topic():
    consumers = {c for t in TOPICS for c in t.consumers} - {"operations"}
    dead_letters = {t.producers[0] for t in TOPICS if t.name.startswith("tsunagu.dlq.")}
    assert consumers <= dead_letters
