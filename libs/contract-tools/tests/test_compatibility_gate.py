"""Inside one version an event's schema may only grow; the gate fails on anything that breaks a reader."""

import copy
import subprocess

import pytest

from tsunagu_contract_tools.compat import breaking_changes, breaking_changes_against, compare
from tsunagu_contracts import ConsultationRegistered, ReferralDeclined
from tsunagu_teststack.infrastructure import repo_root

CONTRACTS = repo_root() / "contracts"


def schema_of(event) -> dict:
    return copy.deepcopy(event.model_json_schema())


def _has_commit(revision: str) -> bool:
    return subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], cwd=CONTRACTS,
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("revision", ["HEAD", "HEAD~1"])
def test_the_schemas_are_compatible_with_the_last_commits_on_main(revision):
    if not _has_commit(revision):
        pytest.skip(f"{revision} does not exist in this clone")
    assert breaking_changes_against(revision, CONTRACTS) == []


def test_adding_an_optional_field_or_a_code_is_compatible():
    old = schema_of(ConsultationRegistered)
    new = schema_of(ConsultationRegistered)
    new["properties"]["visit_count"] = {"type": "integer", "minimum": 1}
    new["$defs"]["Division"]["enum"].append("new_division")
    assert compare(old, new) == []


def test_removing_a_field_is_breaking():
    new = schema_of(ConsultationRegistered)
    del new["properties"]["urgency"]
    assert compare(schema_of(ConsultationRegistered), new) == ["$.urgency: field removed"]


def test_requiring_a_field_that_was_optional_is_breaking():
    new = schema_of(ConsultationRegistered)
    new["required"].append("screening_chart_version")
    assert "$.screening_chart_version: field newly required" in compare(schema_of(ConsultationRegistered), new)


def test_dropping_a_code_is_breaking():
    new = schema_of(ReferralDeclined)
    new["$defs"]["DeclineReason"]["enum"].remove("capacity_full")
    assert compare(schema_of(ReferralDeclined), new) == ["$.reason: enum values removed: capacity_full"]


@pytest.mark.parametrize(("field", "narrower"), [
    ("known_person", {"type": "string", "enum": ["yes", "no"]}),
    ("screening_chart_version", {"type": "string", "pattern": r"^\d{4}\.\d$"}),
    ("needs", {"type": "array", "items": {"$ref": "#/$defs/NeedCategory"}, "minItems": 2, "maxItems": 16}),
])
def test_narrowing_a_type_is_breaking(field, narrower):
    new = schema_of(ConsultationRegistered)
    new["properties"][field] = narrower
    problems = compare(schema_of(ConsultationRegistered), new)
    assert problems and all(p.startswith(f"$.{field}") for p in problems)


def test_removing_an_event_type_is_breaking():
    old = {"tsunagu.x.v1.json": schema_of(ReferralDeclined)}
    assert breaking_changes(old, {}) == [
        "tsunagu.x.v1.json: event type removed (keep it until no producer or consumer uses it)"]
