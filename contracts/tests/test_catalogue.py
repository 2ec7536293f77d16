"""The event catalogue: versioned past-tense facts, documented, exemplified, and free of personal data."""

import re

import pytest
from pydantic import ValidationError

from tsunagu_contracts import CATALOGUE, ConsultationRegistered, PartnerResponded, Recipient, codes

EVENTS = {event.__name__: event for event in CATALOGUE}
NATIONAL_FORM_CODES = {
    "health", "housing", "income", "rent_loan", "tax_utilities", "debt", "job_search", "work_trouble",
    "community", "family", "childcare", "elder_care", "withdrawal", "abuse_dv", "no_food", "other",
}
CODE_LISTS = [c for c in vars(codes).values()
              if isinstance(c, type) and issubclass(c, codes.LabelledCode) and c is not codes.LabelledCode]


def example(event, n: int = 0) -> dict:
    return event.model_json_schema()["examples"][n]


def test_need_categories_are_exactly_the_sixteen_boxes_of_the_national_form():
    assert {c.value for c in codes.NeedCategory} == NATIONAL_FORM_CODES
    assert codes.NeedCategory.HOUSING.label_ja == "住まい"


@pytest.mark.parametrize("code_list", CODE_LISTS, ids=lambda c: c.__name__)
def test_every_code_has_a_stable_snake_case_code_and_a_japanese_label(code_list):
    for member in code_list:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", member.value)
        assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", member.label_ja), member


def test_referral_outcomes_say_why_help_did_not_follow_not_just_closed():
    assert {"no_funds", "not_eligible", "could_not_reach", "person_withdrew"} <= {o.value for o in codes.ReferralOutcome}


@pytest.mark.parametrize("event", CATALOGUE, ids=lambda e: e.__name__)
def test_every_event_type_is_named_for_its_producer_and_carries_a_version(event):
    service = {"intake": "intake", "referral": "referral", "housing-support": "housing",
               "partner-notification": "partners"}[event.producer]
    assert re.fullmatch(rf"tsunagu\.{service}\.[a-z-]+\.v\d+", event.type)


@pytest.mark.parametrize("event", CATALOGUE, ids=lambda e: e.__name__)
def test_every_event_has_a_valid_example_and_described_fields(event):
    examples = event.model_json_schema().get("examples", [])
    assert examples
    for data in examples:
        assert event.model_validate(data).municipality_code == "142166"
    assert event.__doc__


def _strings_without_shape(schema: dict, root: dict, path: str = "$") -> list[str]:
    """Paths of string fields that could hold free text: no enum, const, format or pattern."""
    if "$ref" in schema:
        target = root
        for part in schema["$ref"][2:].split("/"):
            target = target[part]
        return _strings_without_shape(target, root, path)
    found = []
    if schema.get("type") == "string" and not ({"enum", "const", "format", "pattern"} & set(schema)):
        found.append(path)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for i, sub in enumerate(schema.get(key, [])):
            found += _strings_without_shape(sub, root, f"{path}<{i}>")
    for name, sub in schema.get("properties", {}).items():
        found += _strings_without_shape(sub, root, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += _strings_without_shape(schema["items"], root, f"{path}[]")
    return found


@pytest.mark.parametrize("event", CATALOGUE, ids=lambda e: e.__name__)
def test_no_event_has_a_field_that_could_carry_a_name_contact_or_note(event):
    schema = event.model_json_schema()
    assert _strings_without_shape(schema, schema) == []
    assert schema.get("additionalProperties") is False


@pytest.mark.parametrize("smuggled", [{"name": "山田太郎"}, {"phone": "046-000-0000"}, {"notes": "家賃を3か月滞納"}])
def test_an_event_refuses_personal_data_in_an_undeclared_field(smuggled):
    with pytest.raises(ValidationError) as error:
        ConsultationRegistered(**{**example(ConsultationRegistered), **smuggled})
    assert error.value.errors()[0]["loc"] == (next(iter(smuggled)),)


@pytest.mark.parametrize(("change", "field"), [
    ({"municipality_code": "142167"}, "municipality_code"),   # wrong check digit
    ({"municipality_code": "Zama"}, "municipality_code"),
    ({"needs": []}, "needs"),
    ({"needs": ["rent"]}, "needs"),
    ({"occurred_at": "2026-11-27T10:15:00"}, "occurred_at"),  # no time zone
])
def test_an_event_with_a_bad_value_is_refused_naming_the_field(change, field):
    with pytest.raises(ValidationError) as error:
        ConsultationRegistered(**{**example(ConsultationRegistered), **change})
    assert error.value.errors()[0]["loc"][0] == field


def test_the_most_pressing_need_must_be_one_of_the_needs():
    with pytest.raises(ValidationError, match="primary_need must be one of needs"):
        ConsultationRegistered(**{**example(ConsultationRegistered), "primary_need": "no_food"})


def test_a_recipient_is_either_a_division_or_a_partner_never_both():
    with pytest.raises(ValidationError):
        Recipient(kind="division", division="housing", partner_id="0192f0c1-7a2e-7cc3-9a41-00000000b001")
    with pytest.raises(ValidationError):
        Recipient(kind="partner")
    assert Recipient.of_division(codes.Division.HOUSING).division is codes.Division.HOUSING


def test_a_partner_response_carries_exactly_the_detail_its_kind_needs():
    base = example(PartnerResponded)
    with pytest.raises(ValidationError, match="decline_reason is required"):
        PartnerResponded(**{**base, "response": "declined"})
    with pytest.raises(ValidationError, match="outcome does not belong"):
        PartnerResponded(**{**base, "response": "accepted", "outcome": "supported"})
    assert PartnerResponded(**{**base, "response": "declined", "decline_reason": "capacity_full"})


def _undescribed_properties(schema: dict, path: str) -> list[str]:
    """Paths of properties, anywhere in the schema, that carry no description of their own."""
    found = []
    for name, sub in schema.get("properties", {}).items():
        if not str(sub.get("description", "")).strip():
            found.append(f"{path}.{name}")
        found += _undescribed_properties(sub, f"{path}.{name}")
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for i, sub in enumerate(schema.get(key, [])):
            found += _undescribed_properties(sub, f"{path}<{i}>")
    if isinstance(schema.get("items"), dict):
        found += _undescribed_properties(schema["items"], f"{path}[]")
    for name, sub in schema.get("$defs", {}).items():
        found += _undescribed_properties(sub, f"$defs.{name}")
    return found


@pytest.mark.parametrize("event", CATALOGUE, ids=lambda e: e.__name__)
def test_every_field_of_every_event_says_what_it_means_to_a_consumer(event):
    assert _undescribed_properties(event.model_json_schema(), event.__name__) == []
