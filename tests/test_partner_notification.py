"""Each partner organisation gets exactly what it subscribed to and may see, and answers back.

intake, referral and partner-notification run as real processes; partners are real HTTP receivers
on loopback; signatures are checked with the `standardwebhooks` package, as a partner would.
"""

import asyncio
import uuid

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from standardwebhooks.webhooks import Webhook

from tsunagu_contracts import INTAKE_CASES, ConsultationRegistered, encode, uuid7
from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack
REQUESTED = "tsunagu.referral.requested.v1"
DECLINED, REROUTED = "tsunagu.referral.declined.v1", "tsunagu.referral.rerouted.v1"
CONTACT_MADE, COMPLETED = "tsunagu.referral.contact-made.v1", "tsunagu.referral.completed.v1"
ACCEPT = {"response": "accepted"}


class TeamZama:
    def __init__(self, intake, referral, partners, auth_headers):
        self.intake, self.referral, self.partners, self.auth = intake, referral, partners, auth_headers

    async def call(self, service, method: str, path: str, role: str | None = "coordinator", token=None, **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else self.auth(role) if role else {}
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            return await client.request(method, path, headers=headers, **kw)

    async def register(self, name: str, url: str, needs: list[str]) -> dict:
        response = await self.call(self.partners, "POST", "/v1/partners", json={
            "name": name, "need_categories": needs, "areas": ["142166"],
            "contact": {"department": "相談窓口", "email": "desk@example.org"}, "webhook_url": url})
        assert response.status_code == 201, response.text
        return response.json()

    async def subscribe_to(self, partner: dict, event_types: list[str]) -> None:
        response = await self.call(self.partners, "PUT", f"/v1/partners/{partner['partner_id']}/subscription",
                                   role=None, token=partner["api_token"], json={"event_types": event_types})
        assert response.status_code == 200, response.text

    async def route(self, need: str, *partners: dict) -> None:
        """Make `partners` the need's candidates, in this order."""
        response = await self.call(self.referral, "PUT", f"/v1/routing/{need}", json={
            "candidates": [{"kind": "partner", "partner_id": p["partner_id"]} for p in partners]})
        assert response.status_code == 200, response.text

    async def consult(self, needs: list[str], *partners: dict) -> dict:
        consents = [{"recipient": {"kind": "partner", "partner_id": p["partner_id"]}, "purpose": "referral",
                     "method": "written"} for p in partners]
        response = await self.call(self.intake, "POST", "/v1/consultations", role="counter", json={
            "person": {"name": "座間 花子", "name_kana": "ざまはなこ", "birth_date": "1968-04-02"},
            "counter": "self_reliance", "channel": "counter", "urgency": "high", "needs": needs,
            "primary_need": needs[0], "consents": consents})
        assert response.status_code == 201, response.text
        return response.json()

    async def food_bank_referred(self, server, receiver, *, subscribed_to: list[str] | None = None
                                 ) -> tuple[dict, dict, str]:
        """ざまフードバンク, the only candidate for no_food, and a consultation with the person's consent to
        it: the partner, the case and the referral it was asked to take, once the request arrived."""
        food_bank = await self.register("ざまフードバンク", server.add("food", receiver), ["no_food"])
        if subscribed_to:
            await self.subscribe_to(food_bank, subscribed_to)
        await self.route("no_food", food_bank)
        case = await self.consult(["no_food"], food_bank)
        return food_bank, case, (await referral_to(receiver))["referral_id"]

    async def answer(self, partner: dict, referral_id: str, body: dict) -> httpx.Response:
        """The partner answers a referral addressed to it, with its own API token."""
        return await self.call(self.partners, "POST",
                               f"/v1/partners/{partner['partner_id']}/referrals/{referral_id}/responses",
                               role=None, token=partner["api_token"], json=body)

    async def sheet(self, case: dict) -> dict:
        """The case's つなぐシート and its referrals, as a coordinator sees them (none before it opens)."""
        response = await self.call(self.referral, "GET", f"/v1/cases/{case['case_id']}/referrals")
        return response.json() if response.status_code == 200 else {"referrals": []}

    async def referrals(self, case: dict) -> list[dict]:
        return (await self.sheet(case))["referrals"]

    async def deliveries(self, partner: dict) -> list[dict]:
        response = await self.call(self.partners, "GET", f"/v1/partners/{partner['partner_id']}/deliveries",
                                   role=None, token=partner["api_token"])
        return response.json()


@pytest.fixture
async def team(service_process, auth_headers):
    fast = {"TSUNAGU_PARTNERS_RETRY_SCHEDULE_S": "[0.2, 0.2]", "TSUNAGU_PARTNERS_TIMEOUT_S": "5"}  # 3 attempts
    intake = await service_process("intake")
    referral, partners = await asyncio.gather(
        service_process("referral"),
        service_process("partner-notification", extra_env=fast | {"TSUNAGU_PARTNERS_INTAKE_URL": intake.internal_url}))
    return TeamZama(intake, referral, partners, auth_headers)


async def test_each_partner_gets_only_its_own_events_signed_as_standard_webhooks(team):
    async with ReceiverServer() as server:
        food, housing = Receiver(), Receiver()
        food_bank = await team.register("ざまフードバンク", server.add("food", food), ["no_food"])
        landlord = await team.register("居住支援法人 すまいる", server.add("housing", housing), ["housing"])
        await team.route("no_food", food_bank)
        await team.route("housing", landlord)

        case = await team.consult(["no_food", "housing", "debt"], food_bank, landlord)
        await eventually(lambda: asyncio.sleep(0, food.of_type(REQUESTED) and housing.of_type(REQUESTED)),
                         until=bool)
        await asyncio.sleep(1)  # anything else on its way arrives too

    for receiver, partner, need in ((food, food_bank, "no_food"), (housing, landlord, "housing")):
        referrals = receiver.of_type(REQUESTED)
        assert [r.event["data"]["need"] for r in referrals] == [need]
        assert all(r.event["subject"] == case["case_id"] for r in receiver.received)
        for r in receiver.received:
            Webhook(partner["webhook_secret"]).verify(r.body, r.headers)  # raises if the signature is wrong
            assert "座間".encode() not in r.body and b"name" not in r.body, "thin: no personal data"
    assert partner_ids(food) == {food_bank["partner_id"]}


def partner_ids(receiver: Receiver) -> set[str]:
    return {r.event["data"]["recipient"]["partner_id"] for r in receiver.of_type(REQUESTED)}


async def test_failing_receivers_are_retried_or_dead_lettered_and_never_hold_up_the_others(team):
    async with ReceiverServer() as server:
        receivers = {"fast": Receiver(), "flaky": Receiver(answers=[500, 200]), "gone": Receiver(answers=[410]),
                     "hangs": Receiver(hang=30)}
        partners = {name: await team.register(name, server.add(name, r), ["no_food"])
                    for name, r in receivers.items()}
        with socket_closed() as dead_url:
            partners["down"] = await team.register("down", dead_url, ["no_food"])
            await team.consult(["no_food"], *partners.values())
            await eventually(lambda: team.deliveries(partners["fast"]),
                             until=lambda ds: ds and all(d["status"] == "delivered" for d in ds))
            # At that moment no request to the hanging receiver has timed out yet (5 s): the fast
            # partner did not wait for them.
            hanging_while_fast_done = await team.deliveries(partners["hangs"])

            async def settled():
                states = {n: {d["status"] for d in await team.deliveries(p)} for n, p in partners.items()}
                return states

            states = await eventually(settled, until=lambda s: s["flaky"] == {"delivered"}
                                      and s["down"] == {"dead"} and "dead" in s["gone"])

    assert all(d["last_error"] is None for d in hanging_while_fast_done), hanging_while_fast_done
    assert states["fast"] == {"delivered"}
    flaky = await team.deliveries(partners["flaky"])
    assert sorted(d["attempts"] for d in flaky)[-1] == 2, "the one that met the 500 was tried again"
    assert all(d["last_status"] == 200 for d in flaky)
    down = await team.deliveries(partners["down"])
    assert all(d["attempts"] == 3 and d["last_error"] == "ConnectError" for d in down)
    gone = await team.deliveries(partners["gone"])
    assert all(d["attempts"] <= 1 for d in gone), "after 410 nothing is sent to that endpoint again"
    assert {d["status"] for d in gone if d["attempts"] == 0} <= {"pending"}, "kept for redelivery once re-enabled"
    conn = await asyncpg.connect(team.partners.database_url)
    try:
        disabled = await conn.fetchval("SELECT webhook_disabled_at IS NOT NULL FROM partners WHERE partner_id = $1",
                                       uuid.UUID(partners["gone"]["partner_id"]))
        dead = await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'dead'")
        failures = await conn.fetchval("SELECT count(*) FROM outbox WHERE headers->>'ce_type' = "
                                       "'tsunagu.partners.delivery-failed.v1'")
    finally:
        await conn.close()
    assert disabled, "410 disables the endpoint"
    assert failures == dead == len(down) + sum(d["status"] == "dead" for d in gone), \
        "every dead letter is reported as DeliveryFailed"


async def test_a_partner_that_cannot_be_reached_is_shown_unreachable_and_the_need_goes_to_the_next_candidate(team):
    with socket_closed() as dead_url:
        partner = await team.register("届かない団体", dead_url, ["no_food"])
        await team.route("no_food", partner)  # the only candidate: the coordinator comes next
        case = await team.consult(["no_food"], partner)
        await eventually(lambda: team.referrals(case), until=lambda rs: len(rs) >= 2)
        # Everything sent to the partner fails, the notice that the referral left it too; each
        # failure reaches referral, and only the referral's own moves the need.
        await eventually(lambda: team.deliveries(partner), until=lambda ds: all(d["status"] == "dead" for d in ds)
                         and "tsunagu.referral.rerouted.v1" in {d["event_type"] for d in ds})
        await eventually(lambda: failures_not_yet_applied(team), until=lambda missing: missing == 0)
        on_the_case = await team.referrals(case)
        queue = await team.call(team.referral, "GET", "/v1/referrals")
        await mark_overdue(team, on_the_case[1]["referral_id"])  # as the timer does after 3 business days
        queue_with_overdue = await team.call(team.referral, "GET", "/v1/referrals")

    asked, next_one = on_the_case
    assert asked["recipient"] == {"kind": "partner", "partner_id": partner["partner_id"]}
    assert asked["status"] == "unreachable" and asked["status_label_ja"]
    assert next_one["recipient"] == {"kind": "division", "division": "self_reliance"}, "the coordinator's fallback"
    assert next_one["status"] == "requested" and next_one["need"] == "no_food"
    assert len(on_the_case) == 2, "only the undelivered referral moved the need, and only once"
    assert [r["referral_id"] for r in queue.json()][0] == asked["referral_id"]
    assert [(r["referral_id"], r["overdue"]) for r in queue_with_overdue.json()] == [
        (asked["referral_id"], False), (next_one["referral_id"], True)], "unreachable first, then overdue"


async def failures_not_yet_applied(team) -> int:
    """DeliveryFailed events partner-notification wrote that referral has not applied yet."""
    partners = await asyncpg.connect(team.partners.database_url)
    referral = await asyncpg.connect(team.referral.database_url)
    try:
        failed = await partners.fetch("SELECT event_id FROM outbox WHERE headers->>'ce_type' = "
                                      "'tsunagu.partners.delivery-failed.v1'")
        applied = await referral.fetchval("SELECT count(*) FROM applied_events WHERE consumer = 'referral' "
                                          "AND event_id = ANY($1::uuid[])",
                                          [r["event_id"] for r in failed])
    finally:
        await partners.close()
        await referral.close()
    return len(failed) - applied


async def mark_overdue(team, referral_id: str) -> None:
    conn = await asyncpg.connect(team.referral.database_url)
    try:
        await conn.execute("UPDATE referrals SET overdue_at = now() WHERE referral_id = $1", uuid.UUID(referral_id))
    finally:
        await conn.close()


class socket_closed:
    """A loopback URL where nothing listens."""

    def __enter__(self) -> str:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return f"http://127.0.0.1:{port}/nobody"

    def __exit__(self, *exc) -> None:
        return None


async def test_consent_withdrawn_mid_flow_stops_notifications_answers_and_detail_fetches(team):
    async with ReceiverServer() as server:
        food = Receiver()
        food_bank = await team.register("ざまフードバンク", server.add("food", food), ["no_food", "income"])
        await team.route("no_food", food_bank)
        case = await team.consult(["no_food"], food_bank)
        referral = (await eventually(lambda: asyncio.sleep(0, food.of_type(REQUESTED)), until=bool))[0]
        # The webhook links the details (`detailsurl`, signed with the rest of the body), on the service's address.
        details_url = Webhook(food_bank["webhook_secret"]).verify(referral.body, referral.headers)["detailsurl"]
        details_path = f"/v1/partners/{food_bank['partner_id']}/referrals/{referral.event['data']['referral_id']}"
        assert details_url == team.partners.url + details_path
        async with httpx.AsyncClient(timeout=30) as client:  # followed as given, with the partner's own token
            before = await client.get(details_url, headers={"Authorization": f"Bearer {food_bank['api_token']}"})
        provisions = await team.call(team.partners, "GET", f"/v1/partners/{food_bank['partner_id']}/provisions")

        withdrawn = await team.call(team.intake, "POST", f"/v1/consents/{case['consent_ids'][0]}/withdrawal",
                                    role="counter")
        assert withdrawn.status_code == 204
        await eventually(lambda: asyncio.sleep(0, food.of_type("tsunagu.intake.consent-withdrawn.v1")), until=bool)
        added = await team.call(team.intake, "POST", f"/v1/cases/{case['case_id']}/needs", role="counter",
                                json={"need": "income", "identified_by": "living_support"})
        assert added.status_code == 204
        await asyncio.sleep(2)  # long enough for a NeedIdentified delivery, were one made
        answer = await team.call(
            team.partners, "POST",
            f"/v1/partners/{food_bank['partner_id']}/referrals/{referral.event['data']['referral_id']}/responses",
            role=None, token=food_bank["api_token"], json={"response": "accepted"})

        after = await team.call(team.partners, "GET", details_path, role=None, token=food_bank["api_token"])

    assert before.status_code == 200, before.text
    assert before.json()["person"]["name"] == "座間 花子"
    assert provisions.json()[0]["items"] == ["name", "name_kana"], "what a referral needs and intake holds"
    assert provisions.json()[0]["basis"] == "consent" and provisions.json()[0]["person_ref"] == case["person_ref"]
    assert not food.of_type("tsunagu.intake.need-identified.v1")
    # Refused either way: for the withdrawn consent itself (403), or, once referral has taken the
    # referral back from the partner for that withdrawal and its news has arrived, as no longer the
    # partner's (409).
    assert (answer.status_code, answer.json()["message_ja"][:6]) in {(403, "本人の同意が"), (409, "この紹介は終")}, \
        answer.text
    assert after.status_code == 403


async def test_a_partners_answer_moves_the_referral_and_reaches_every_subscriber(team):
    async with ReceiverServer() as server:
        food = Receiver()
        food_bank, case, referral_id = await team.food_bank_referred(server, food)
        path = f"/v1/partners/{food_bank['partner_id']}/referrals/{referral_id}/responses"
        other = await team.register("別の団体", server.add("other", Receiver()), ["no_food"])
        not_ours = await team.call(team.partners, "POST", f"/v1/partners/{other['partner_id']}/referrals/"
                                   f"{referral_id}/responses", role=None, token=other["api_token"],
                                   json={"response": "accepted"})
        wrong_token = await team.call(team.partners, "POST", path, role=None, token=other["api_token"],
                                      json={"response": "accepted"})
        accepted = await team.call(team.partners, "POST", path, role=None, token=food_bank["api_token"],
                                   json={"response": "accepted"})
        await eventually(lambda: team.referrals(case), until=lambda rs: rs[0]["status"] == "accepted")
        notified = await eventually(lambda: asyncio.sleep(0, food.of_type("tsunagu.referral.accepted.v1")),
                                    until=bool)
        details = f"/v1/partners/{food_bank['partner_id']}/referrals/{referral_id}"
        while_ours = await team.call(team.partners, "GET", details, role=None, token=food_bank["api_token"])
        await team.call(team.referral, "POST", f"/v1/referrals/{referral_id}/reroute",
                        json={"recipient": {"kind": "division", "division": "living_support"}})
        await eventually(lambda: asyncio.sleep(0, food.of_type("tsunagu.referral.rerouted.v1")), until=bool)
        after_reroute = await eventually(
            lambda: team.call(team.partners, "GET", details, role=None, token=food_bank["api_token"]),
            until=lambda r: r.status_code == 403)

    assert accepted.status_code == 201
    assert not_ours.status_code == 404 and wrong_token.status_code == 403
    assert notified[0].event["data"]["referral_id"] == referral_id
    assert while_ours.status_code == 200
    assert "他の紹介先" in after_reroute.json()["message_ja"], "details only while the referral is with the partner"


async def test_a_decline_with_its_reason_shows_on_the_sheet_asks_the_next_candidate_and_reaches_its_subscribers(
        team):
    async with ReceiverServer() as server:
        food, kitchen = Receiver(), Receiver()
        food_bank = await team.register("ざまフードバンク", server.add("food", food), ["no_food"])
        next_one = await team.register("こども食堂 ひまわり", server.add("kitchen", kitchen), ["no_food"])
        await team.subscribe_to(food_bank, [REQUESTED, DECLINED])
        # Subscribed to declines as well: a decline is news to the partner that declined, no other.
        await team.subscribe_to(next_one, [REQUESTED, DECLINED, REROUTED])
        await team.route("no_food", food_bank, next_one)
        case = await team.consult(["no_food"], food_bank, next_one)
        referral_id = (await referral_to(food))["referral_id"]

        declined = await team.answer(food_bank, referral_id, {"response": "declined",
                                                              "decline_reason": "capacity_full"})
        # The decline and the next request are one transaction in referral.
        on_the_sheet = await eventually(lambda: team.referrals(case), until=lambda rs: len(rs) == 2)
        told = await eventually(lambda: asyncio.sleep(0, food.of_type(DECLINED)), until=bool)
        asked = await eventually(lambda: asyncio.sleep(0, kitchen.of_type(REQUESTED)), until=bool)
        # Rerouted comes after declined on the case's partition: once it reached the next partner,
        # every partner's delivery of the decline was decided.
        moved = await eventually(lambda: asyncio.sleep(0, kitchen.of_type(REROUTED)), until=bool)
        sent_to = {name: {d["event_type"] for d in await team.deliveries(p)}
                   for name, p in (("food_bank", food_bank), ("next_one", next_one))}

    assert declined.status_code == 201, declined.text
    first, second = on_the_sheet
    assert first["referral_id"] == referral_id and first["candidate_rank"] == 1
    assert (first["status"], first["status_label_ja"], first["decline_reason"]) == \
        ("declined", "辞退", "capacity_full")
    assert second["recipient"] == {"kind": "partner", "partner_id": next_one["partner_id"]}, "the routing's next"
    assert (second["status"], second["need"], second["candidate_rank"]) == ("requested", "no_food", 2)
    data = signed(told, food_bank)[0]["data"]
    assert (data["referral_id"], data["reason"]) == (referral_id, "capacity_full")
    assert signed(asked, next_one)[0]["data"]["referral_id"] == second["referral_id"]
    assert {k: signed(moved, next_one)[0]["data"][k] for k in ("referral_id", "new_referral_id", "reason")} == {
        "referral_id": referral_id, "new_referral_id": second["referral_id"], "reason": "declined"}
    assert sent_to == {"food_bank": {REQUESTED, DECLINED}, "next_one": {REQUESTED, REROUTED}}, \
        "each partner per its subscription, and the decline to the partner that declined only"


async def test_contact_made_after_acceptance_shows_on_the_sheet_with_its_method_and_reaches_the_partner(team):
    async with ReceiverServer() as server:
        food = Receiver()
        food_bank, case, referral_id = await team.food_bank_referred(server, food)

        accepted = await team.answer(food_bank, referral_id, ACCEPT)
        contact = await team.answer(food_bank, referral_id, {"response": "contact_made",
                                                             "contact_method": "home_visit"})
        sheet = await eventually(lambda: team.sheet(case),
                                 until=lambda s: s["referrals"][0]["status"] == "contact_made")
        told = await eventually(lambda: asyncio.sleep(0, food.of_type(CONTACT_MADE)), until=bool)

    assert (accepted.status_code, contact.status_code) == (201, 201), (accepted.text, contact.text)
    referral = sheet["referrals"][0]
    assert (referral["status_label_ja"], referral["contact_method"]) == ("本人と接触", "home_visit")
    assert sheet["last_contact_at"] is not None, "the case is no longer without contact"
    data = signed(told, food_bank)[0]["data"]
    assert (data["referral_id"], data["method"]) == (referral_id, "home_visit")


async def test_completion_with_an_outcome_shows_on_the_sheet_reaches_the_partner_and_ends_its_answers(team):
    async with ReceiverServer() as server:
        food = Receiver()
        food_bank, case, referral_id = await team.food_bank_referred(server, food,
                                                                    subscribed_to=[REQUESTED, COMPLETED])

        accepted = await team.answer(food_bank, referral_id, ACCEPT)
        completed = await team.answer(food_bank, referral_id, {"response": "completed", "outcome": "supported"})
        sheet = await eventually(lambda: team.referrals(case), until=lambda rs: rs[0]["status"] == "completed")
        told = await eventually(lambda: asyncio.sleep(0, food.of_type(COMPLETED)), until=bool)
        after = await team.answer(food_bank, referral_id, {"response": "contact_made", "contact_method": "phone"})
        sheet_after = await team.referrals(case)

    assert (accepted.status_code, completed.status_code) == (201, 201), (accepted.text, completed.text)
    assert (sheet[0]["status_label_ja"], sheet[0]["outcome"]) == ("終了", "supported")
    data = signed(told, food_bank)[0]["data"]
    assert (data["referral_id"], data["outcome"]) == (referral_id, "supported")
    assert after.status_code == 409 and "終了" in after.json()["message_ja"], after.text
    assert sheet_after == sheet
    assert await responses_relayed(team) == 2, "the refused contact was never sent on to referral"


async def test_answers_a_referral_cannot_take_where_it_stands_are_refused_in_japanese_first_and_change_nothing(
        team):
    async with ReceiverServer() as server:
        food = Receiver()
        # The only candidate: a decline sends the need to the coordinator.
        food_bank, case, referral_id = await team.food_bank_referred(server, food)

        completed_first = await team.answer(food_bank, referral_id, {"response": "completed", "outcome": "supported"})
        without_reason = await team.answer(food_bank, referral_id, {"response": "declined"})
        untouched = await team.referrals(case)
        declined = await team.answer(food_bank, referral_id, {"response": "declined",
                                                              "decline_reason": "outside_service"})
        sheet = await eventually(lambda: team.referrals(case), until=lambda rs: len(rs) == 2)
        after_decline = {what: await team.answer(food_bank, referral_id, body) for what, body in {
            "contact": {"response": "contact_made", "contact_method": "phone"},
            "second decline": {"response": "declined", "decline_reason": "capacity_full"},
            "acceptance": ACCEPT,
            "completion": {"response": "completed", "outcome": "supported"}}.items()}
        sheet_after = await team.referrals(case)

    assert completed_first.status_code == 409, completed_first.text
    assert "受理" in completed_first.json()["message_ja"] and "accepted" in completed_first.json()["message_en"]
    assert without_reason.status_code == 422 and without_reason.json()["errors"][0]["field"] == "response"
    assert [r["status"] for r in untouched] == ["requested"]
    assert declined.status_code == 201, declined.text
    for what, refused in after_decline.items():
        assert refused.status_code == 409, (what, refused.text)
        assert list(refused.json())[:2] == ["message_ja", "message_en"], "Japanese first, English beside it"
        assert "他の紹介先" in refused.json()["message_ja"] and "declined" in refused.json()["message_en"], what
    assert sheet_after == sheet, "nothing moved on the sheet"
    assert (sheet[0]["status"], sheet[0]["decline_reason"]) == ("declined", "outside_service")
    assert sheet[1]["recipient"] == {"kind": "division", "division": "self_reliance"}
    assert await responses_relayed(team) == 1, "only the decline was sent on to referral"


async def test_a_partner_cannot_answer_a_referral_that_never_reached_it_and_had_nowhere_else_to_go(team):
    with socket_closed() as dead_url:
        partner = await team.register("届かない団体", dead_url, ["no_food"])
        await team.subscribe_to(partner, [REQUESTED])
        await team.route("no_food", partner)
        case = await team.consult(["no_food"], partner)
        # Unreachable: the need went to the coordinator, the last one there is to ask.
        await eventually(lambda: team.referrals(case), until=lambda rs: len(rs) == 2)
        # The coordinator asks the partner again by hand, and it is unreachable again: referral marks
        # the referral so and moves nothing, for nobody is left to ask.
        added = await team.call(team.referral, "POST", f"/v1/cases/{case['case_id']}/referrals", json={
            "need": "no_food", "recipient": {"kind": "partner", "partner_id": partner["partner_id"]}})
        sheet = await eventually(lambda: team.referrals(case),
                                 until=lambda rs: len(rs) == 3 and rs[-1]["status"] == "unreachable")
        # The partner hears of it after all (the coordinator phones) and answers.
        answer = await team.answer(partner, added.json()["referral_id"], ACCEPT)
        sheet_after = await team.referrals(case)

    assert added.status_code == 201, added.text
    assert answer.status_code == 409, answer.text
    assert "他の紹介先" in answer.json()["message_ja"] and "unreachable" in answer.json()["message_en"]
    assert sheet_after == sheet
    assert await responses_relayed(team) == 0, "nothing was sent on to referral to be dropped there"


async def referral_to(receiver: Receiver) -> dict:
    """The first referral the partner was asked to take, once its request arrived."""
    return (await eventually(lambda: asyncio.sleep(0, receiver.of_type(REQUESTED)), until=bool))[0].event["data"]


def signed(received: list, partner: dict) -> list[dict]:
    """The events, each after checking its Standard Webhooks signature with the partner's secret."""
    for r in received:
        Webhook(partner["webhook_secret"]).verify(r.body, r.headers)  # raises if the signature is wrong
    return [r.event for r in received]


async def responses_relayed(team) -> int:
    """Partners' answers partner-notification accepted and queued for referral."""
    conn = await asyncpg.connect(team.partners.database_url)
    try:
        return await conn.fetchval("SELECT count(*) FROM outbox WHERE headers->>'ce_type' = "
                                   "'tsunagu.partners.responded.v1'")
    finally:
        await conn.close()


async def test_a_redelivered_event_is_not_delivered_twice(team, infrastructure, kafka_namespace):
    async with ReceiverServer() as server:
        food = Receiver()
        food_bank = await team.register("ざまフードバンク", server.add("food", food), ["no_food"])
        case = await team.consult(["no_food"], food_bank)
        first = (await eventually(lambda: asyncio.sleep(0, food.of_type(
            "tsunagu.intake.consultation-registered.v1")), until=bool))[0]
        event = ConsultationRegistered.model_validate(first.event["data"])

        producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
        await producer.start()
        try:
            record = encode(event, event_id=uuid.UUID(first.event["id"]))
            await producer.send_and_wait(kafka_namespace + INTAKE_CASES.name, record.value, key=record.key,
                                         headers=record.headers)
            marker = encode(event.model_copy(update={"consultation_id": uuid7()}))
            await producer.send_and_wait(kafka_namespace + INTAKE_CASES.name, marker.value, key=marker.key,
                                         headers=marker.headers)
        finally:
            await producer.stop()
        await eventually(lambda: asyncio.sleep(0, len(food.of_type("tsunagu.intake.consultation-registered.v1"))),
                         until=lambda n: n == 2)

    ids = [r.event["id"] for r in food.of_type("tsunagu.intake.consultation-registered.v1")]
    assert ids[0] == first.event["id"] and len(set(ids)) == 2, "the redelivered event was not sent again"
    assert len({r.headers["webhook-id"] for r in food.received}) == len(food.received)
    assert case["case_id"] == str(event.case_id)


async def test_a_partner_running_its_own_consumer_reads_the_same_filtered_events_on_its_own_topic(
        team, infrastructure, kafka_namespace):
    from aiokafka import AIOKafkaConsumer

    from tsunagu_contracts import PartnerDeliveries, decode
    from tsunagu_topics import KafkaCredentials

    response = await team.call(team.partners, "POST", "/v1/partners", json={
        "name": "自前のコンシューマを持つ団体", "need_categories": ["no_food"], "areas": ["142166"],
        "contact": {"department": "情報システム", "email": "it@example.org"}, "kafka_topic": True})
    partner = response.json()
    topic = PartnerDeliveries.for_partner(uuid.UUID(partner["partner_id"])).name
    assert partner["kafka_topic"] == topic and topic.startswith(partner["kafka_acl_prefix"])
    await team.route("no_food", partner)
    case = await team.consult(["no_food", "housing"], partner)

    # The partner reads as its own Kafka user, in a consumer group under its own prefix.
    own = partner.get("kafka_credentials")
    assert (own is None) == (infrastructure.kafka_admin is None), "credentials exactly when the broker checks them"
    options = KafkaCredentials(own["username"], own["password"]).aiokafka() if own else {}
    group = own["group_prefix"] if own else kafka_namespace + partner["kafka_acl_prefix"]
    consumer = AIOKafkaConsumer(kafka_namespace + topic, bootstrap_servers=infrastructure.kafka_bootstrap, **options,
                                auto_offset_reset="earliest", group_id=f"{group}reader")
    await consumer.start()
    seen = []
    try:
        while not any(e.type == REQUESTED for e in seen):
            record = await asyncio.wait_for(consumer.getone(), 60)
            seen.append(decode(record.headers, record.value).data)
    finally:
        await consumer.stop()

    assert {str(e.case_id) for e in seen} == {case["case_id"]}
    requested = [e for e in seen if e.type == REQUESTED]
    assert [e.need.value for e in requested] == ["no_food"], "the housing referral went to the city, not here"


async def test_retry_after_slows_the_retry_and_a_delivery_can_be_redelivered_by_hand(team):
    async with ReceiverServer() as server:
        slow_down = Receiver(answers=[429, 200], retry_after="2")
        partner = await team.register("混雑中の団体", server.add("busy", slow_down), ["no_food"])
        await team.subscribe_to(partner, ["tsunagu.intake.consultation-registered.v1"])
        await team.consult(["no_food"], partner)
        await eventually(lambda: asyncio.sleep(0, len(slow_down.received)), until=lambda n: n == 2)
        delivery = (await eventually(lambda: team.deliveries(partner),
                                     until=lambda ds: ds and ds[0]["status"] == "delivered"))[0]

        again = await team.call(team.partners, "POST",
                                f"/v1/partners/{partner['partner_id']}/deliveries/{delivery['delivery_id']}/redelivery",
                                role="ops")
        await eventually(lambda: asyncio.sleep(0, len(slow_down.received)), until=lambda n: n == 3)

    first, retried, redelivered = slow_down.received
    assert retried.at - first.at >= 2, "the receiver's Retry-After (2 s) outweighs the 0.2 s backoff"
    assert again.status_code == 202
    assert first.headers["webhook-id"] == retried.headers["webhook-id"] == redelivered.headers["webhook-id"]


async def test_a_referral_that_arrives_before_its_consent_is_held_and_delivered_with_the_consent(
        team, infrastructure, kafka_namespace):
    from tsunagu_contracts import REFERRALS, ConsentGranted, ReferralRequested

    async with ReceiverServer() as server:
        food = Receiver()
        partner = await team.register("ざまフードバンク", server.add("food", food), ["no_food"])
        example = ReferralRequested.model_json_schema()["examples"][0]
        referral = ReferralRequested.model_validate({
            **example, "case_id": str(uuid7()), "need": "no_food",
            "recipient": {"kind": "partner", "partner_id": partner["partner_id"]}})
        consent = ConsentGranted(case_id=referral.case_id, municipality_code="142166",
                                 occurred_at=referral.occurred_at, consent_id=uuid7(), person_ref=uuid7(),
                                 recipient={"kind": "partner", "partner_id": partner["partner_id"]},
                                 purpose="referral", method="written")
        producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
        await producer.start()
        try:
            first = encode(referral)
            await producer.send_and_wait(kafka_namespace + REFERRALS.name, first.value, key=first.key,
                                         headers=first.headers)

            async def held():
                conn = await asyncpg.connect(team.partners.database_url)
                try:
                    return await conn.fetchval("SELECT count(*) FROM held_events")
                finally:
                    await conn.close()

            await eventually(held, until=lambda n: n == 1)
            assert not food.received, "nothing before the consent"
            second = encode(consent)
            await producer.send_and_wait(kafka_namespace + INTAKE_CASES.name, second.value, key=second.key,
                                         headers=second.headers)
        finally:
            await producer.stop()
        delivered = await eventually(lambda: asyncio.sleep(0, food.of_type(REQUESTED)), until=bool)

    assert delivered[0].event["data"]["referral_id"] == str(referral.referral_id)
    assert await held() == 0


async def test_a_closed_case_ends_the_partners_answers_and_detail_fetches(team):
    async with ReceiverServer() as server:
        food = Receiver()
        food_bank, case, referral_id = await team.food_bank_referred(server, food)
        details = f"/v1/partners/{food_bank['partner_id']}/referrals/{referral_id}"
        while_open = await team.call(team.partners, "GET", details, role=None, token=food_bank["api_token"])

        closed = await team.call(team.referral, "POST", f"/v1/cases/{case['case_id']}/closure",
                                 json={"reason": "resolved"})
        assert closed.status_code == 204, closed.text
        # The notice is queued in the transaction that closes the partner's referrals: once it
        # arrives, the closing is there for the partner's next request to see.
        await eventually(lambda: asyncio.sleep(0, food.of_type("tsunagu.referral.case-closed.v1")), until=bool)
        after = await team.call(team.partners, "GET", details, role=None, token=food_bank["api_token"])
        answer = await team.call(team.partners, "POST", f"{details}/responses", role=None,
                                 token=food_bank["api_token"], json={"response": "accepted"})
        provisions = await team.call(team.partners, "GET", f"/v1/partners/{food_bank['partner_id']}/provisions")

    assert while_open.status_code == 200, while_open.text
    assert after.status_code == 403, "the person's details are no longer the partner's to see"
    assert answer.status_code == 409, "an answer that no longer fits the referral is refused as a conflict"
    for refused in (after, answer):
        assert "終了" in refused.json()["message_ja"] and "closed" in refused.json()["message_en"]
    assert len(provisions.json()) == 1, "nothing was provided after the case closed"
