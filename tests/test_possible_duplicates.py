"""Before registering someone as new, counter staff ask intake whether a person with the same kana
name and birth date is already known; intake answers pseudonymous ids only, and registers nobody."""

import secrets

import httpx
import pytest

pytestmark = pytest.mark.stack


def someone_new() -> dict:
    kana = "てすと " + "".join(secrets.choice("あいうえおかきくけこさしすせそ") for _ in range(8))
    return {"name": "試験 太郎", "name_kana": kana, "birth_date": "1970-01-02"}


async def test_staff_asking_about_a_registered_kana_name_and_birth_date_get_only_that_persons_id(
        service_process, auth_headers, consultation):
    intake = await service_process("intake")
    person = someone_new()
    async with httpx.AsyncClient(base_url=intake.url, timeout=30, headers=auth_headers("counter")) as client:
        before = await client.post("/v1/persons/possible-duplicates", json={
            "name_kana": person["name_kana"], "birth_date": person["birth_date"]})
        registered = await client.post("/v1/consultations", json=consultation(person=person))
        typed_in_katakana = "テスト" + person["name_kana"][3:]
        after = await client.post("/v1/persons/possible-duplicates", json={
            "name_kana": typed_in_katakana, "birth_date": person["birth_date"]})

    assert before.status_code == 200 and before.json() == {"possible_duplicates": [], "warning_ja": None}
    assert registered.status_code == 201, registered.text
    assert after.json()["possible_duplicates"] == [registered.json()["person_ref"]]
    assert after.json()["warning_ja"].startswith("同じ氏名（かな）と生年月日の方")
    assert person["name"] not in after.text


async def test_only_counter_staff_and_coordinators_may_ask_and_a_bad_kana_is_refused_beside_its_field(
        service_process, auth_headers):
    intake = await service_process("intake")
    person = someone_new()
    key = {"name_kana": person["name_kana"], "birth_date": person["birth_date"]}
    async with httpx.AsyncClient(base_url=intake.url, timeout=30) as client:
        council = await client.post("/v1/persons/possible-duplicates", json=key, headers=auth_headers("council"))
        latin = await client.post("/v1/persons/possible-duplicates", json=key | {"name_kana": "zama"},
                                  headers=auth_headers("coordinator"))

    assert council.status_code == 403
    assert latin.status_code == 422
    assert [e["field"] for e in latin.json()["errors"]] == ["name_kana"]
    assert latin.json()["message_ja"]


async def test_the_hint_names_the_first_twenty_persons_registered_with_a_kana_name_and_birth_date(
        service_process, auth_headers, consultation):
    """However many share a kana name and birth date, a registration reads and answers a bounded list."""
    intake = await service_process("intake")
    person = someone_new()
    async with httpx.AsyncClient(base_url=intake.url, timeout=30, headers=auth_headers("counter")) as client:
        refs = []
        for _ in range(22):
            registered = await client.post("/v1/consultations", json=consultation(person=person))
            assert registered.status_code == 201, registered.text
            refs.append(registered.json()["person_ref"])
        hint = await client.post("/v1/persons/possible-duplicates", json={
            "name_kana": person["name_kana"], "birth_date": person["birth_date"]})

    assert registered.json()["possible_duplicates"] == refs[:20]
    assert hint.json()["possible_duplicates"] == refs[:20]
