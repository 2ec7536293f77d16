"""Which consent purposes reach a referral, and what each purpose receives of the person."""

import pytest

from tsunagu_contracts import ReferralAccepted, ReferralRequested, ReferralSheetOpened
from tsunagu_contracts.codes import ConsentPurpose, NeedCategory, referral_purposes
from tsunagu_contracts.codes import PROVISION_ITEMS as ITEMS
from tsunagu_partners.domain.provision import provided
from tsunagu_partners.domain.routing import permits


def example(event_type):
    return event_type.model_validate(event_type.model_json_schema()["examples"][0])


def test_a_referral_is_reached_by_a_consent_to_referral_or_to_the_support_its_need_calls_for():
    assert referral_purposes(NeedCategory.HOUSING) == {"referral", "housing_support"}
    assert referral_purposes("job_search") == referral_purposes("work_trouble") == {"referral", "employment_support"}
    assert referral_purposes("no_food") == referral_purposes(None) == {"referral"}
    assert all("check_in" not in referral_purposes(n) and "estate_clearance" not in referral_purposes(n)
               for n in NeedCategory)


def test_permits_applies_the_referral_rule_to_every_event_about_a_referral_and_only_to_those():
    requested, accepted = example(ReferralRequested), example(ReferralAccepted)  # requested: need housing
    assert permits(requested, frozenset({"housing_support"}), statutory=False, need="housing")
    assert not permits(accepted, frozenset({"check_in"}), statutory=False, need="housing")
    assert not permits(accepted, frozenset({"housing_support"}), statutory=False, need="no_food")
    assert permits(accepted, frozenset(), statutory=True, need="no_food"), "a statutory basis reaches all"
    assert permits(example(ReferralSheetOpened), frozenset({"check_in"}), statutory=False)


def test_every_purpose_says_what_it_receives_and_none_receives_the_counters_summary():
    assert set(ITEMS) == set(ConsentPurpose)
    assert all("summary" not in items for items in ITEMS.values())


@pytest.mark.parametrize(("purpose", "items"), [
    ("referral", ["name", "name_kana", "phone"]),
    ("housing_support", ["name", "name_kana", "phone", "address"]),
    ("check_in", ["name", "phone", "address"]),
    ("estate_clearance", ["name", "address"]),
])
def test_a_purpose_receives_only_its_items_that_intake_holds(purpose, items):
    person = {"person_ref": "p", "name": "相模 太郎", "name_kana": "さがみ たろう", "phone": "046-000-0000",
              "address": "座間市入谷西0-0-0", "summary": {"notes": "…"}}
    assert list(provided(person, purpose)) == items
    assert "phone" not in provided(person | {"phone": None}, purpose)
