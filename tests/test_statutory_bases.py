"""支援会議 on the real stack: a coordinator records a conference's decision to share without consent,
staff see it on the case, bad input stores nothing, and two endings at once end it once.

intake runs as a real process on the real broker and PostgreSQL; the racing endings run on a
migrated intake database, each by the rule beside its SQL (intake's adapters/repository.py).
"""

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet

from tsunagu_contracts import StatutoryBasisEnded, StatutoryBasisRecorded
from tsunagu_intake.adapters.crypto import PersonalDataCipher
from tsunagu_intake.adapters.repository import unit_of_work
from tsunagu_intake.domain.commands import EXAMPLE, RecordStatutoryBasis, RegisterConsultation
from tsunagu_intake.handlers import consultations, statutory_bases
from tsunagu_servicehost.errors import Rejected

pytestmark = pytest.mark.stack
PARTNER = "0192f0c1-7a2e-7cc3-9a41-00000000b001"


def decision(**changes) -> dict:
    today = datetime.now(UTC).date().isoformat()
    return {"basis": "support_conference_swa_106_6", "held_on": today, "valid_until": "2099-03-31",
            "members": [{"kind": "division", "division": "housing"}, {"kind": "partner", "partner_id": PARTNER}],
            "purposes": ["referral", "housing_support"]} | changes


async def published(database_url: str, event_type: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT count(*) FROM outbox WHERE headers->>'ce_type' = $1", event_type)
    finally:
        await conn.close()


@pytest.fixture
async def intake(service_process):
    return await service_process("intake")


@pytest.fixture
async def case_id(intake, auth_headers, consultation) -> str:
    async with httpx.AsyncClient(base_url=intake.url, timeout=20) as client:
        created = await client.post("/v1/consultations", json=consultation(), headers=auth_headers("counter"))
    assert created.status_code == 201, created.text
    return created.json()["case_id"]


async def test_a_coordinator_records_a_conference_decision_staff_see_it_on_the_case_and_it_ends_once(
        intake, auth_headers, case_id):
    async with httpx.AsyncClient(base_url=intake.url, timeout=20) as client:
        by_counter = await client.post(f"/v1/cases/{case_id}/statutory-bases", json=decision(),
                                       headers=auth_headers("counter"))
        recorded = await client.post(f"/v1/cases/{case_id}/statutory-bases", json=decision(),
                                     headers=auth_headers("coordinator"))
        basis_id = recorded.json()["basis_id"]
        case = (await client.get(f"/v1/cases/{case_id}", headers=auth_headers("counter"))).json()
        ended = await client.post(f"/v1/cases/{case_id}/statutory-bases/{basis_id}/end",
                                  headers=auth_headers("coordinator"))
        again = await client.post(f"/v1/cases/{case_id}/statutory-bases/{basis_id}/end",
                                  headers=auth_headers("coordinator"))
        after = (await client.get(f"/v1/cases/{case_id}", headers=auth_headers("counter"))).json()

    assert by_counter.status_code == 403, "only a coordinator records a conference's decision"
    assert recorded.status_code == 201, recorded.text
    [shown] = case["statutory_bases"]
    assert shown["basis_id"] == basis_id and shown["basis_label_ja"] == "支援会議（社会福祉法第106条の6）"
    assert shown["members"] == decision()["members"] and shown["ended_at"] is None
    assert [p["label_ja"] for p in shown["purposes"]] == ["支援機関へのつなぎ", "居住支援（住まい探し・入居・見守り）"]
    assert ended.status_code == 200 and ended.json()["ended_at"], ended.text
    assert again.status_code == 409 and again.json()["message_ja"] == "この支援会議の決定はすでに終了しています。"
    assert after["statutory_bases"][0]["ended_at"] == ended.json()["ended_at"]
    assert await published(intake.database_url, StatutoryBasisRecorded.type) == 4, "2 members x 2 purposes"
    assert await published(intake.database_url, StatutoryBasisEnded.type) == 4


@pytest.mark.parametrize(("changes", "field"), [
    ({"basis": "because_we_said_so"}, "basis"),
    ({"purposes": ["gossip"]}, "purposes.0"),
    ({"members": []}, "members"),
    ({"valid_until": "2000-01-01", "held_on": "2000-01-01"}, "valid_until"),  # over before it was recorded
    ({"held_on": "2099-01-01"}, "held_on"),                                  # a conference yet to meet
])
async def test_a_decision_with_bad_input_is_answered_422_in_japanese_first_and_nothing_is_stored(
        intake, auth_headers, case_id, changes, field):
    async with httpx.AsyncClient(base_url=intake.url, timeout=20) as client:
        refused = await client.post(f"/v1/cases/{case_id}/statutory-bases", json=decision(**changes),
                                    headers=auth_headers("coordinator"))
        case = (await client.get(f"/v1/cases/{case_id}", headers=auth_headers("counter"))).json()

    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["message_ja"] == "入力内容に誤りがあります。何も保存されていません。"
    assert field in [e["field"] for e in body["errors"]] and all(e["message_ja"] for e in body["errors"])
    assert case["statutory_bases"] == []
    assert await published(intake.database_url, StatutoryBasisRecorded.type) == 0


async def test_a_decision_for_an_unknown_case_or_an_unknown_basis_is_not_found(intake, auth_headers, case_id):
    async with httpx.AsyncClient(base_url=intake.url, timeout=20) as client:
        no_case = await client.post(f"/v1/cases/{uuid.uuid4()}/statutory-bases", json=decision(),
                                    headers=auth_headers("coordinator"))
        no_basis = await client.post(f"/v1/cases/{case_id}/statutory-bases/{uuid.uuid4()}/end",
                                     headers=auth_headers("coordinator"))
    assert (no_case.status_code, no_basis.status_code) == (404, 404)


async def test_two_endings_of_one_decision_at_once_end_it_once_and_refuse_the_other(migrated_database):
    cipher = PersonalDataCipher([Fernet.generate_key().decode()], b"index-key")
    now = datetime.now(UTC)
    async with asyncpg.create_pool(await migrated_database("intake"), min_size=2, max_size=6) as pool:
        async with unit_of_work(pool) as uow:
            done = await consultations.register_consultation(
                uow, RegisterConsultation.model_validate(EXAMPLE), cipher=cipher, staff="counter-staff",
                municipality_code="142166", now=now)
            basis = await statutory_bases.record_statutory_basis(
                uow, done.case_id, RecordStatutoryBasis.model_validate(decision()), staff="coordinator", now=now)

        async def end():
            try:
                async with unit_of_work(pool) as uow:
                    return await statutory_bases.end_statutory_basis(uow, done.case_id, basis.basis_id,
                                                                     staff="coordinator", now=now)
            except Rejected as rejected:
                return rejected

        results = await asyncio.gather(*(end() for _ in range(4)))
        async with pool.acquire() as conn:
            ended = await conn.fetchval("SELECT count(*) FROM outbox WHERE headers->>'ce_type' = $1",
                                        StatutoryBasisEnded.type)
    assert sum(isinstance(r, Rejected) and r.why == "conflict" for r in results) == 3
    assert ended == 4, "one ending: one event per member and purpose, not four times that"
