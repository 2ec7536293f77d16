"""The housing council follows every tenancy from house-hunting to its end, and no missed check-in
goes unnoticed.

intake, referral, housing-support and partner-notification run as real processes on the real
broker and database; the partner (a 居住支援法人 on the council) is a real HTTP receiver.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tsunagu_contracts.japan import JST
from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
MISSED = "tsunagu.housing.check-in-missed.v1"
ESCALATED = "tsunagu.housing.check-in-escalated.v1"
CLEARANCE = "tsunagu.housing.estate-clearance-requested.v1"
OPENED = "tsunagu.housing.support-opened.v1"
HOME = {"landlord": "ざま不動産", "address": "座間市緑ケ丘9-9-9 101", "moved_in_on": "2027-01-15"}


class Council:
    def __init__(self, intake, referral, housing, partners, auth_headers, token):
        self.intake, self.referral, self.housing, self.partners = intake, referral, housing, partners
        self.auth, self.token = auth_headers, token

    async def call(self, service, method: str, path: str, role: str = "council", headers=None, **kw):
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            return await client.request(method, path, headers=headers or self.auth(role), **kw)

    async def ok(self, service, method: str, path: str, role: str = "council", status: int = 200, **kw) -> dict:
        response = await self.call(service, method, path, role, **kw)
        assert response.status_code == status, response.text
        return response.json() if response.content else {}

    async def housing_partner(self, url: str) -> dict:
        """A 居住支援法人: a Team Zama partner with a webhook, and a council member."""
        partner = await self.ok(self.partners, "POST", "/v1/partners", "coordinator", 201, json={
            "name": "居住支援法人 すまいる", "need_categories": ["housing"], "areas": ["142166"],
            "contact": {"department": "相談窓口", "email": "desk@sumairu.example"}, "webhook_url": url})
        await self.ok(self.partners, "PUT", f"/v1/partners/{partner['partner_id']}/subscription", "coordinator",
                      headers={"Authorization": f"Bearer {partner['api_token']}"},
                      json={"event_types": [OPENED, MISSED, ESCALATED, CLEARANCE]})
        member = await self.ok(self.housing, "POST", "/v1/members", status=201, json={
            "kind": "partner", "partner_id": partner["partner_id"], "name": "居住支援法人 すまいる",
            "takes_on": ["house_hunting", "check_ins", "estate_clearance"]})
        return partner | {"member_id": member["member_id"]}

    async def consult(self, needs: list[str], consents: list[tuple[dict, str]] = ()) -> dict:
        return await self.ok(self.intake, "POST", "/v1/consultations", "counter", 201, json={
            "person": {"name": "相模 太郎", "name_kana": "さがみ たろう", "birth_date": "1951-07-07",
                       "address": "座間市入谷西0-0-0"},
            "counter": "housing", "channel": "counter", "urgency": "high", "needs": needs, "primary_need": needs[0],
            "consents": [{"recipient": {"kind": "partner", "partner_id": p["partner_id"]}, "purpose": purpose,
                          "method": "written"} for p, purpose in consents]})

    async def support_of(self, case_id: str, stage: str | None = None) -> dict:
        async def probe():
            listed = await self.ok(self.housing, "GET", "/v1/supports", "coordinator")
            return [s for s in listed["items"] if s["case_id"] == case_id and (stage is None or s["stage"] == stage)]
        return (await eventually(probe, until=bool))[0]

    async def move(self, support_id: str, to_stage: str, status: int = 200, **body) -> dict:
        return await self.ok(self.housing, "POST", f"/v1/supports/{support_id}/stage", status=status,
                             json={"to_stage": to_stage, **body})

    async def housing_referral(self, case_id: str, until) -> dict:
        async def probe():
            sheet = await self.ok(self.referral, "GET", f"/v1/cases/{case_id}/referrals", "coordinator")
            return [r for r in sheet["referrals"] if r["need"] == "housing"][-1]
        return await eventually(probe, until=until)


@pytest.fixture
async def council(service_process, auth_headers, token):
    intake = await service_process("intake")
    referral, housing, partners = await asyncio.gather(
        service_process("referral"),
        service_process("housing-support", extra_env={"TSUNAGU_HOUSING_TIMER_INTERVAL_S": "0.5"}),
        service_process("partner-notification", extra_env={"TSUNAGU_PARTNERS_INTAKE_URL": intake.internal_url}))
    return Council(intake, referral, housing, partners, auth_headers, token)


def of_type(receiver: Receiver, event_type: str) -> list[dict]:
    return [r.event for r in receiver.of_type(event_type)]


async def test_a_housing_need_becomes_a_support_walked_to_its_end_and_a_death_asks_the_partner_to_clear_the_home(
        council):
    async with ReceiverServer() as server:
        receiver = Receiver()
        partner = await council.housing_partner(server.add("sumairu", receiver))
        case = await council.consult(["housing", "rent_loan"], [(partner, "housing_support"),
                                                               (partner, "estate_clearance")])
        support = await council.support_of(case["case_id"], "house_hunting")
        sid = support["support_id"]
        assert (await council.housing_referral(case["case_id"], lambda r: r["status"] == "accepted"))

        # The secretariat and the partner lead nothing yet; the council gives the lead to the partner.
        await council.ok(council.housing, "PUT", f"/v1/supports/{sid}/lead", json={"member_id": partner["member_id"]})
        illegal = await council.call(council.housing, "POST", f"/v1/supports/{sid}/stage", json={"to_stage": "contract"})
        assert illegal.status_code == 409
        assert [s["stage"] for s in illegal.json()["allowed_next"]] == ["application", "ended"]
        assert "住まい探し" in illegal.json()["message_ja"] and "allowed" in illegal.json()["message_en"]

        await council.move(sid, "application", reason="内見のうえ本人が希望")
        await council.move(sid, "contract", reason="審査通過")
        without_home = await council.call(council.housing, "POST", f"/v1/supports/{sid}/stage",
                                          json={"to_stage": "move_in"})
        assert without_home.status_code == 422
        await council.move(sid, "move_in", reason="契約締結", tenancy=HOME)
        await council.move(sid, "accompaniment")
        assert (await council.housing_referral(case["case_id"], lambda r: r["status"] == "contact_made"))
        backwards = await council.call(council.housing, "POST", f"/v1/supports/{sid}/stage",
                                       json={"to_stage": "house_hunting"})
        assert backwards.status_code == 409
        await council.move(sid, "ended", reason="ご逝去", end_reason="died", ended_on="2027-06-30")

        clearance = (await eventually(lambda: asyncio.sleep(0, of_type(receiver, CLEARANCE)), until=bool))[0]
        referral = await council.housing_referral(case["case_id"], lambda r: r["status"] == "completed")
        detail = await council.ok(council.housing, "GET", f"/v1/supports/{sid}")
        ended_twice = await council.call(council.housing, "POST", f"/v1/supports/{sid}/stage",
                                         json={"to_stage": "ended", "end_reason": "died"})

    assert clearance["data"]["partner_id"] == partner["partner_id"]
    assert referral["outcome"] == "supported", "the person was housed, whatever came after"
    assert ended_twice.status_code == 409 and ended_twice.json()["allowed_next"] == []
    assert [s["to_stage"] for s in detail["stages"]] == [
        "house_hunting", "application", "contract", "move_in", "accompaniment", "ended"]
    assert detail["stages"][1]["reason"] == "内見のうえ本人が希望" and detail["stages"][-1]["end_reason"] == "died"
    assert detail["tenancy"]["address"] == HOME["address"] and detail["tenancy"]["end_reason"] == "died"
    assert [(t["kind"], t["member_id"]) for t in detail["tasks"]] == [("estate_clearance", partner["member_id"])]
    for received in receiver.received:
        Webhook(partner["webhook_secret"]).verify(received.body, received.headers)
        assert "緑ケ丘".encode() not in received.body and "相模".encode() not in received.body
    assert not of_type(receiver, OPENED), "opened under the secretariat's lead: news to it, not to the partner"


async def test_estate_clearance_waits_for_the_persons_consent_to_it(council):
    async with ReceiverServer() as server:
        receiver = Receiver()
        partner = await council.housing_partner(server.add("sumairu", receiver))
        case = await council.consult(["housing"], [(partner, "housing_support")])
        sid = (await council.support_of(case["case_id"]))["support_id"]
        for stage, body in (("application", {}), ("contract", {}), ("move_in", {"tenancy": HOME}),
                            ("ended", {"end_reason": "died"})):
            await council.move(sid, stage, **body)
        await council.housing_referral(case["case_id"], lambda r: r["status"] == "completed")
        await asyncio.sleep(2)  # time enough for the request to arrive, were it sent
        before_consent = of_type(receiver, CLEARANCE)
        await council.ok(council.intake, "POST", f"/v1/cases/{case['case_id']}/consents", "counter", 201, json={
            "recipient": {"kind": "partner", "partner_id": partner["partner_id"]}, "purpose": "estate_clearance",
            "method": "written"})
        after_consent = await eventually(lambda: asyncio.sleep(0, of_type(receiver, CLEARANCE)), until=bool)

    assert before_consent == [], "a consent to find a home is not a consent to clear it"
    assert len(after_consent) == 1


async def test_a_check_in_due_while_the_service_was_stopped_is_reported_once_and_two_absences_escalate_at_once(
        council):
    async with ReceiverServer() as server:
        receiver = Receiver()
        partner = await council.housing_partner(server.add("sumairu", receiver))
        case = await council.consult(["housing"], [(partner, "housing_support")])
        sid = (await council.support_of(case["case_id"]))["support_id"]
        await council.ok(council.housing, "PUT", f"/v1/supports/{sid}/lead", json={"member_id": partner["member_id"]})
        for stage, body in (("application", {}), ("contract", {}), ("move_in", {"tenancy": HOME})):
            await council.move(sid, stage, **body)
        start = (datetime.now(JST) + timedelta(seconds=6)).replace(microsecond=0)
        await council.ok(council.housing, "PUT", f"/v1/supports/{sid}/check-in-schedule", json={"rules": [{
            "kind": "safety_contact", "grace_minutes": 0,
            "rrule": f"DTSTART;TZID=Asia/Tokyo:{start:%Y%m%dT%H%M%S}\nRRULE:FREQ=SECONDLY;INTERVAL=2;COUNT=3"}]})
        await council.housing.stop()
        # All three occurrences (start, +2 s, +4 s) fall due while the service is stopped.
        await asyncio.sleep(max(0.0, (start + timedelta(seconds=5) - datetime.now(JST)).total_seconds()))
        await council.housing.start()
        missed = await eventually(lambda: asyncio.sleep(0, of_type(receiver, MISSED)), until=bool)
        follow_up = await council.ok(council.housing, "GET", "/v1/check-ins?missed=true")

        for _ in range(2):
            await council.ok(council.housing, "POST", f"/v1/supports/{sid}/check-ins", status=201, json={
                "kind": "visit", "result": "not_at_home", "member_id": partner["member_id"]})
        escalated = await eventually(lambda: asyncio.sleep(0, of_type(receiver, ESCALATED)), until=bool)
        await asyncio.sleep(2)  # a second report of the same misses would arrive meanwhile

    assert len(of_type(receiver, MISSED)) == 1, "caught up once, not once per missed tick"
    assert missed[0]["data"]["missed_occurrences"] == 3
    assert missed[0]["data"]["responsible"]["partner_id"] == partner["partner_id"], "addressed to the lead"
    assert [c["support_id"] for c in follow_up["items"] if c["status"] == "missed"] == [sid]
    assert len(escalated) == 1 and escalated[0]["data"]["reason"] == "not_at_home_twice"


async def test_a_partner_member_sees_only_the_supports_it_is_on(council):
    async with ReceiverServer() as server:
        partner = await council.housing_partner(server.add("sumairu", Receiver()))
        case = await council.consult(["housing"])
        sid = (await council.support_of(case["case_id"]))["support_id"]
        session = await council.ok(council.partners, "POST", f"/v1/partners/{partner['partner_id']}/session",
                                   headers={"Authorization": f"Bearer {partner['api_token']}"})
        as_partner = {"Authorization": f"Bearer {session['access_token']}"}
        staff_cannot = await council.call(council.partners, "POST", f"/v1/partners/{partner['partner_id']}/session",
                                          "coordinator")
        before = await council.call(council.housing, "GET", f"/v1/supports/{sid}", headers=as_partner)
        await council.ok(council.housing, "POST", f"/v1/supports/{sid}/tasks", status=201,
                         json={"member_id": partner["member_id"], "kind": "check_ins"})
        after = await council.call(council.housing, "GET", f"/v1/supports/{sid}", headers=as_partner)
        listed = await council.call(council.housing, "GET", "/v1/supports", headers=as_partner)
        may_not_open = await council.call(council.housing, "POST", "/v1/supports", headers=as_partner,
                                          json={"case_id": case["case_id"]})

    assert staff_cannot.status_code == 403, "only the partner's own API token opens a session"
    assert before.status_code == 404
    assert after.status_code == 200 and after.json()["tasks"][0]["kind"] == "check_ins"
    assert [s["support_id"] for s in listed.json()["items"]] == [sid]
    assert may_not_open.status_code == 403


async def test_the_overview_counts_what_the_council_did(council):
    supported = await council.consult(["housing"])
    by_hand = await council.consult(["debt"])
    sid = (await council.support_of(supported["case_id"]))["support_id"]
    await eventually(lambda: council.call(council.housing, "POST", "/v1/supports", json={"case_id": by_hand["case_id"]}),
                     until=lambda r: r.status_code == 201)
    second = await council.ok(council.housing, "POST", "/v1/supports", status=409, json={"case_id": by_hand["case_id"]})
    manual = (await council.support_of(by_hand["case_id"]))["support_id"]
    moved_in_on = datetime.now(JST).date() + timedelta(days=10)
    for stage, body in (("application", {}), ("contract", {}),
                        ("move_in", {"tenancy": HOME | {"moved_in_on": moved_in_on.isoformat()}})):
        await council.move(manual, stage, **body)
    member = (await council.ok(council.housing, "GET", "/v1/members"))[0]["member_id"]
    await council.ok(council.housing, "POST", f"/v1/supports/{manual}/check-ins", status=201,
                     json={"kind": "visit", "result": "well", "member_id": member})
    await council.move(manual, "ended", end_reason="moved_out")
    overview = await council.ok(council.housing, "GET", "/v1/overview", "coordinator")

    stages = {s["stage"]: s["count"] for s in overview["supports_by_stage"]}
    referred = datetime.now(UTC).astimezone(JST).date()
    assert second["message_en"] == "the case already has a support under way"
    assert stages == {"house_hunting": 1, "application": 0, "contract": 0, "move_in": 0, "accompaniment": 0, "ended": 1}
    assert overview["check_ins_this_month"] == {"done": 1, "missed": 0, "missed_occurrences": 0, "escalated": 0}
    assert overview["days_from_referral_to_move_in"] == {"median": (moved_in_on - referred).days, "tenancies": 1}
    assert {r["reason"]: r["count"] for r in overview["tenancies_ended_by_reason"]}["moved_out"] == 1
    assert sid != manual
