"""支援会議 on in-memory fakes: a decision is one event per member and purpose, it is refused before
anything is stored when it does not hold together, and ending it announces each grant's end once."""

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from tsunagu_contracts import Recipient, StatutoryBasisEnded, StatutoryBasisRecorded, uuid7
from tsunagu_contracts.codes import ConsentPurpose, Division, LegalBasis
from tsunagu_intake.domain.commands import EXAMPLE, RecordStatutoryBasis, RegisterConsultation
from tsunagu_intake.handlers import consultations, referral_view, statutory_bases
from tsunagu_contracts import CaseClosed
from tsunagu_servicehost.errors import Rejected, Why

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
PARTNER = uuid7()
DECISION = {
    "basis": "support_conference_sra_9", "held_on": "2026-11-30", "valid_until": "2027-05-31",
    "members": [{"kind": "division", "division": "housing"}, {"kind": "partner", "partner_id": str(PARTNER)}],
    "purposes": ["referral", "housing_support"],
}


async def a_case(uow, cipher):
    cmd = RegisterConsultation.model_validate({**EXAMPLE, "consents": []})
    done = await consultations.register_consultation(uow, cmd, cipher=cipher, staff="counter-staff",
                                                     municipality_code="142166", now=NOW)
    uow.events.clear()
    return done.case_id


async def record(uow, case_id, **changes):
    return await statutory_bases.record_statutory_basis(
        uow, case_id, RecordStatutoryBasis.model_validate({**DECISION, **changes}), staff="coordinator", now=NOW)


async def test_a_decision_publishes_one_basis_per_member_and_purpose_naming_the_decision_and_its_last_day(
        uow, cipher):
    case_id = await a_case(uow, cipher)
    basis = await record(uow, case_id)

    recorded = uow.of(StatutoryBasisRecorded)
    assert [(e.recipient, e.purpose) for e in recorded] == [
        (Recipient.of_division(Division.HOUSING), ConsentPurpose.REFERRAL),
        (Recipient.of_division(Division.HOUSING), ConsentPurpose.HOUSING_SUPPORT),
        (Recipient.of_partner(PARTNER), ConsentPurpose.REFERRAL),
        (Recipient.of_partner(PARTNER), ConsentPurpose.HOUSING_SUPPORT)]
    assert {e.decision_id for e in recorded} == {basis.basis_id}
    assert len({e.basis_id for e in recorded}) == 4, "each grant has its own id, as a consent does"
    assert all(e.basis is LegalBasis.SUPPORT_CONFERENCE_SRA_9 and e.decided_on == date(2026, 11, 30)
               and e.valid_until == date(2027, 5, 31) for e in recorded)


async def test_ending_a_decision_announces_the_end_of_each_grant_and_ending_it_again_is_a_conflict(uow, cipher):
    case_id = await a_case(uow, cipher)
    basis = await record(uow, case_id)
    granted = {e.basis_id: (e.recipient, e.purpose) for e in uow.of(StatutoryBasisRecorded)}

    ended = await statutory_bases.end_statutory_basis(uow, case_id, basis.basis_id, staff="coordinator",
                                                      now=NOW + timedelta(days=1))
    with pytest.raises(Rejected) as twice:
        await statutory_bases.end_statutory_basis(uow, case_id, basis.basis_id, staff="coordinator",
                                                  now=NOW + timedelta(days=2))

    assert ended.ended
    assert {e.basis_id: (e.recipient, e.purpose) for e in uow.of(StatutoryBasisEnded)} == granted
    assert twice.value.why is Why.CONFLICT and len(uow.of(StatutoryBasisEnded)) == 4


async def test_a_basis_of_another_case_or_none_at_all_is_not_found(uow, cipher):
    case_id = await a_case(uow, cipher)
    basis = await record(uow, case_id)

    for case, basis_id in ((uuid7(), basis.basis_id), (case_id, uuid7())):
        with pytest.raises(Rejected) as refused:
            await statutory_bases.end_statutory_basis(uow, case, basis_id, staff="coordinator", now=NOW)
        assert refused.value.why is Why.NOT_FOUND


@pytest.mark.parametrize(("changes", "field"), [
    ({"held_on": "2026-12-05"}, "held_on"),        # a conference that has not met yet
    ({"valid_until": "2026-11-30", "held_on": "2026-11-01"}, "valid_until"),  # already over
])
async def test_a_decision_dated_in_the_future_or_already_over_is_invalid_and_nothing_is_stored(
        uow, cipher, changes, field):
    case_id = await a_case(uow, cipher)
    with pytest.raises(Rejected) as refused:
        await record(uow, case_id, **changes)
    assert (refused.value.why, refused.value.field) == (Why.INVALID, field)
    assert uow.events == [] and uow.repo.statutory_bases == {}


@pytest.mark.parametrize("changes", [
    {"valid_until": "2026-11-01"},                                          # before the conference
    {"members": []},
    {"members": [DECISION["members"][0], DECISION["members"][0]]},        # the same member twice
    {"purposes": ["referral", "referral"]},
    {"purposes": ["gossip"]},
    {"basis": "because_we_said_so"},
])
def test_a_decision_that_does_not_hold_together_is_refused_before_anything_runs(changes):
    with pytest.raises(ValidationError):
        RecordStatutoryBasis.model_validate({**DECISION, **changes})


async def test_a_closed_case_takes_no_statutory_basis(uow, cipher):
    case_id = await a_case(uow, cipher)
    await referral_view.on_case_closed(uow, CaseClosed.model_validate(
        {**CaseClosed.model_json_schema()["examples"][0], "case_id": str(case_id)}))
    with pytest.raises(Rejected) as refused:
        await record(uow, case_id)
    assert refused.value.why is Why.CONFLICT
