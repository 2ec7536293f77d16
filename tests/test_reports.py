"""The figures a coordinator reports come from the events, equal what the services recorded, and
come back the same when the read model is rebuilt from the log.

intake and referral run as real processes on the real broker and PostgreSQL. A partner's answers
come by telephone and the coordinator records them; the partner's one undelivered notice arrives as
partner-notification sends it, a DeliveryFailed record on its topic.
"""

import asyncio
import json
import statistics
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from tsunagu_contracts import (
    INTAKE_CASES, PARTNER_RESPONSES, ConsultationRegistered, DeliveryFailed, ReferralRequested, encode,
)
from tsunagu_contracts.codes import DeliveryChannel
from tsunagu_contracts.japan import JST
from tsunagu_outbox import unit_of_work_on
from tsunagu_referral.adapters.reports import ReportsStore
from tsunagu_referral.adapters.repository import Repository
from tsunagu_referral.entrypoints.rebuild import LogIncomplete, rebuild
from tsunagu_referral.handlers.reports import project_appended
from tsunagu_servicehost import ServiceSettings
from tsunagu_teststack.waiting import eventually

pytestmark = pytest.mark.stack

REPORTS = ("summary", "partners", "declines")


@dataclass
class Stack:
    intake: object
    referral: object
    auth: object
    partner_id: str


@pytest.fixture
async def stack(service_process, auth_headers) -> Stack:
    """intake and referral, with the food need routed to one partner organisation."""
    # Follow-ups fall due the day a referral is accepted, checked every half second.
    intake, referral = await asyncio.gather(service_process("intake"), service_process("referral", extra_env={
        "TSUNAGU_REFERRAL_TIMER_INTERVAL_S": "0.5", "TSUNAGU_REFERRAL_FOLLOW_UP_BUSINESS_DAYS": "0"}))
    partner_id = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=referral.url, timeout=30) as client:
        routed = await client.put("/v1/routing/no_food", headers=auth_headers("coordinator"), json={
            "candidates": [{"kind": "partner", "partner_id": partner_id}]})
    assert routed.status_code == 200, routed.text
    return Stack(intake, referral, auth_headers, partner_id)


async def report(stack: Stack, name: str, **params) -> dict:
    async with httpx.AsyncClient(base_url=stack.referral.url, timeout=30) as client:
        response = await client.get(f"/v1/reports/{name}", params=params, headers=stack.auth("coordinator"))
    assert response.status_code == 200, response.text
    return response.json()


async def coordinator(stack: Stack, path: str, body: dict | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.referral.url, timeout=30) as client:
        response = await client.post(path, json=body, headers=stack.auth("coordinator"))
    assert response.status_code in (200, 204), response.text
    return response


async def register(stack: Stack, body: dict) -> dict:
    async with httpx.AsyncClient(base_url=stack.intake.url, timeout=30) as client:
        response = await client.post("/v1/consultations", json=body, headers=stack.auth("counter"))
    assert response.status_code == 201, response.text
    return response.json()


async def referrals_of(stack: Stack, case_id: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=stack.referral.url, timeout=30) as client:
        response = await client.get(f"/v1/cases/{case_id}/referrals", headers=stack.auth("coordinator"))
    return response.json()["referrals"] if response.status_code == 200 else []


async def follow_ups_due(stack: Stack) -> list[dict]:
    async with httpx.AsyncClient(base_url=stack.referral.url, timeout=30) as client:
        return (await client.get("/v1/follow-ups", params={"state": "due"}, headers=stack.auth("coordinator"))).json()


async def event_times(stack: Stack) -> dict[str, dict[str, datetime]]:
    """referral id → event type → when, from what referral itself wrote to its outbox."""
    conn = await asyncpg.connect(stack.referral.database_url)
    try:
        rows = await conn.fetch("SELECT headers->>'ce_type' AS type, value FROM outbox")
    finally:
        await conn.close()
    times: dict[str, dict[str, datetime]] = {}
    for row in rows:
        data = json.loads(bytes(row["value"]))
        if "referral_id" in data:
            kind = row["type"].split(".")[2]
            times.setdefault(data["referral_id"], {})[kind] = datetime.fromisoformat(data["occurred_at"])
    return times


def median_and_p90(seconds: list[float]) -> tuple[float, float]:
    """Computed apart from the service: statistics' inclusive quantiles are Excel's PERCENTILE.INC."""
    return statistics.median(seconds), statistics.quantiles(seconds, n=10, method="inclusive")[8]


def durations(seconds: list[float]) -> dict:
    middle, high = median_and_p90(seconds)
    return {"accepted": len(seconds), "median_hours": round(middle / 3600, 2), "p90_hours": round(high / 3600, 2),
            "median_seconds": round(middle, 1), "p90_seconds": round(high, 1)}


async def food_referral(stack: Stack, consultation) -> tuple[str, str]:
    """A new person whose one need, food, is referred to the partner: (case id, referral id)."""
    case_id = (await register(stack, consultation(needs=["no_food"], primary_need="no_food", screening=None,
                                                    consents=[])))["case_id"]
    referrals = await eventually(lambda: referrals_of(stack, case_id), until=lambda r: len(r) == 1)
    return case_id, referrals[0]["referral_id"]


async def publish(infrastructure, namespace: str, topic, *events) -> list:
    """Put events on a topic as their producer would; the records' metadata, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options, enable_idempotence=True)
    await producer.start()
    try:
        return [await producer.send_and_wait(namespace + topic.name, record.value, key=record.key,
                                             headers=record.headers) for record in map(encode, events)]
    finally:
        await producer.stop()


def consultation_event(**changes) -> ConsultationRegistered:
    example = ConsultationRegistered.model_config["json_schema_extra"]["examples"][0]
    return ConsultationRegistered.model_validate({**example, "consultation_id": str(uuid.uuid4()), **changes})


async def undelivered(stack: Stack, infrastructure, namespace: str, case_id: str, referral_id: str) -> None:
    """partner-notification gave up delivering the referral to the partner."""
    event = DeliveryFailed(case_id=case_id, municipality_code="142166", occurred_at=datetime.now(UTC),
                           delivery_id=uuid.uuid4(), partner_id=stack.partner_id, event_id=uuid.uuid4(),
                           channel=DeliveryChannel.WEBHOOK, attempts=8, event_type="tsunagu.referral.requested.v1",
                           referral_id=referral_id)
    await publish(infrastructure, namespace, PARTNER_RESPONSES, event)


@pytest.fixture
async def a_month_of_work(stack, consultation, infrastructure, kafka_namespace):
    """Four people, five consultations, answers of every kind, a notice the partner never got, one
    case closed."""
    first = await register(stack, consultation())  # rent_loan, housing, debt, health
    again = await register(stack, {"person_ref": first["person_ref"], "counter": "living_support",
                                     "channel": "counter", "urgency": "normal", "needs": ["income"],
                                     "primary_need": "income"})
    assert again["case_id"] == first["case_id"], "a known person's consultation joins their open case"
    case_y, fed = await food_referral(stack, consultation)
    case_z, refused = await food_referral(stack, consultation)
    case_w, lost = await food_referral(stack, consultation)

    # The partner answers by telephone; the coordinator records its answers.
    await coordinator(stack, f"/v1/referrals/{fed}/acceptance")
    await coordinator(stack, f"/v1/referrals/{refused}/decline", {"reason": "capacity_full"})
    await undelivered(stack, infrastructure, kafka_namespace, case_w, lost)
    mine = {r["need"]: r["referral_id"] for r in await eventually(
        lambda: referrals_of(stack, first["case_id"]), until=lambda r: len(r) == 5)}
    await coordinator(stack, f"/v1/referrals/{mine['rent_loan']}/acceptance")
    await coordinator(stack, f"/v1/referrals/{mine['rent_loan']}/completion", {"outcome": "supported"})
    await coordinator(stack, f"/v1/referrals/{mine['housing']}/acceptance")
    await coordinator(stack, f"/v1/referrals/{mine['housing']}/completion", {"outcome": "no_funds"})
    await coordinator(stack, f"/v1/referrals/{mine['debt']}/decline", {"reason": "outside_service"})
    await coordinator(stack, f"/v1/cases/{case_z}/closure", {"reason": "resolved"})
    await eventually(lambda: referrals_of(stack, case_w), until=lambda r: len(r) == 2)  # moved on
    # The counters ask two people whether the help arrived: one was helped, one could not be reached.
    due = await eventually(lambda: follow_ups_due(stack), until=lambda f: len(f) >= 2)
    for follow_up, outcome in zip(due, ("reached_helped", "could_not_reach")):
        await coordinator(stack, f"/v1/follow-ups/{follow_up['follow_up_id']}/answer", {"outcome": outcome})
    return [first["case_id"], case_y, case_z, case_w]


async def test_the_summary_counts_what_the_services_recorded_and_compares_needs_per_person_with_the_city(
        stack, a_month_of_work):
    referrals = [r for case in a_month_of_work for r in await referrals_of(stack, case)]
    times = await event_times(stack)
    to_acceptance = [(t["accepted"] - t["requested"]).total_seconds() for t in times.values() if "accepted" in t]
    by_need: dict[str, int] = {}
    for r in referrals:
        by_need[r["need"]] = by_need.get(r["need"], 0) + 1
    expected = {
        "consultations": 5, "people": 4,
        "needs_per_person": round((5 + 1 + 1 + 1) / 4, 2),  # 5 needs, then food three times
        "needs_per_person_city_reference": 3.88,
        "referrals": len(referrals),
        "by_need": by_need,
        "time_to_acceptance": durations(to_acceptance),
        "completed": {"completed": 2, "supported": 1, "supported_share": 0.5},
        "follow_ups": {"answered": 2, "helped": 1, "helped_share": 0.5},
        "cases_closed": 1,
    }

    def figures(summary: dict) -> dict:
        return {"consultations": summary["consultations"], "people": summary["people"],
                "needs_per_person": summary["needs_per_person"],
                "needs_per_person_city_reference": summary["needs_per_person_city_reference"],
                "referrals": summary["referrals"],
                "by_need": {n["need"]: n["referrals"] for n in summary["referrals_by_need"]},
                "time_to_acceptance": summary["time_to_acceptance"], "completed": summary["completed"],
                "follow_ups": summary["follow_ups"], "cases_closed": summary["cases_closed"]}

    summary = await eventually(lambda: report(stack, "summary"), until=lambda s: figures(s) == expected)

    assert len(to_acceptance) == 3
    partner_row = next(r for r in summary["referrals_by_recipient"] if r.get("partner_id") == stack.partner_id)
    assert partner_row["referrals"] == 3 and partner_row["label_ja"] == "連携団体（チーム座間）"
    today = datetime.now(JST).date()
    assert figures(await report(stack, "summary", **{"from": str(today), "to": str(today)})) == expected
    later = await report(stack, "summary", **{"from": str(today + timedelta(days=1))})
    assert (later["consultations"], later["people"], later["needs_per_person"], later["referrals"]) == (0, 0, None, 0)


async def test_each_partner_shows_what_it_received_how_fast_it_answered_and_why_it_declined(
        stack, a_month_of_work):
    times = await event_times(stack)
    asked = {r["referral_id"] for case in a_month_of_work for r in await referrals_of(stack, case)
             if r["recipient"].get("partner_id") == stack.partner_id}
    answered = [min(t[k] for k in ("accepted", "declined") if k in t) - t["requested"]
                for rid, t in times.items() if rid in asked and ("accepted" in t or "declined" in t)]
    expected = {"kind": "partner", "partner_id": stack.partner_id, "label_ja": "連携団体（チーム座間）",
                "referrals_received": 3, "accepted": 1, "declined": 1, "acceptance_rate": 0.333,
                "median_hours_to_first_answer": round(statistics.median(d.total_seconds() for d in answered) / 3600, 2),
                "decline_reasons": {"capacity_full": 1}, "overdue": 0, "deliveries_failed": 1}

    def row(report_: dict) -> dict | None:
        return next((r for r in report_["recipients"] if r.get("partner_id") == stack.partner_id), None)

    partners = await eventually(lambda: report(stack, "partners"), until=lambda p: row(p) == expected)

    assert len(answered) == 2
    debt = next(r for r in partners["recipients"] if r["decline_reasons"].get("outside_service"))
    assert debt["kind"] == "division" and debt["declined"] == 1


async def test_declines_say_why_referrals_failed_by_reason_and_need(stack, a_month_of_work):
    expected = [
        ("completed_unsupported", "no_funds", "housing", 1),
        ("declined", "capacity_full", "no_food", 1),
        ("declined", "outside_service", "debt", 1),
        ("rerouted", "partner_unreachable", "no_food", 1),
    ]

    declines = await eventually(lambda: report(stack, "declines"), until=lambda d: [
        (r["stage"], r["reason"], r["need"], r["count"]) for r in d["by_reason_and_need"]] == expected)

    assert declines["failures"] == 4, "a decline's reroute to the next candidate is not counted twice"
    assert declines["by_reason_and_need"][1]["reason_label_ja"] == "受け入れ枠がない"


async def test_a_report_rebuilt_from_the_log_equals_the_live_one(stack, a_month_of_work):
    await eventually(lambda: report(stack, "summary"), until=lambda s: s["cases_closed"] == 1
                     and s["completed"]["completed"] == 2 and s["consultations"] == 5
                     and s["follow_ups"]["answered"] == 2)
    await eventually(lambda: report(stack, "declines"), until=lambda d: d["failures"] == 4)
    live = {name: await report(stack, name) for name in REPORTS}

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tsunagu_referral", "rebuild-reports", env=stack.referral.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = (await proc.communicate())[0].decode()

    assert proc.returncode == 0, output
    assert "rebuilt from" in output and " 0 event(s)" not in output, output
    rebuilt = {name: await report(stack, name) for name in REPORTS}
    assert rebuilt == live


async def test_a_csv_report_opens_in_excel_with_japanese_headers_first(stack, a_month_of_work):
    async with httpx.AsyncClient(base_url=stack.referral.url, timeout=30) as client:
        by_parameter = await client.get("/v1/reports/declines?format=csv", headers=stack.auth("coordinator"))
        by_accept = await client.get("/v1/reports/summary",
                                     headers=stack.auth("coordinator") | {"Accept": "text/csv"})

    assert by_parameter.headers["content-type"] == "text/csv; charset=utf-8"
    assert by_parameter.content.startswith("\ufeff".encode()), "a byte-order mark, or Excel reads Shift_JIS"
    lines = by_parameter.content.decode("utf-8-sig").split("\r\n")
    assert lines[0].startswith("段階 (stage),理由 (reason),課題 (need),件数 (count)")
    assert "attachment" in by_parameter.headers["content-disposition"]
    assert by_accept.content.decode("utf-8-sig").split("\r\n")[0].startswith("指標 (metric)")
    assert "新規相談件数" in by_accept.text


async def test_a_bad_period_is_refused_in_japanese_first_and_only_coordinators_see_reports(stack):
    conn = await asyncpg.connect(stack.referral.database_url)
    try:
        before = await conn.fetchval("SELECT count(*) FROM applied_events")
        async with httpx.AsyncClient(base_url=stack.referral.url, timeout=30) as client:
            reversed_ = await client.get("/v1/reports/summary", params={"from": "2026-12-01", "to": "2026-11-01"},
                                         headers=stack.auth("coordinator"))
            not_a_date = await client.get("/v1/reports/partners", params={"from": "2026-13-01"},
                                          headers=stack.auth("coordinator"))
            counter = await client.get("/v1/reports/summary", headers=stack.auth("counter"))
        after = await conn.fetchval("SELECT count(*) FROM applied_events")
    finally:
        await conn.close()

    assert reversed_.status_code == 422
    assert reversed_.json()["message_ja"] == "入力内容に誤りがあります。何も保存されていません。"
    assert reversed_.json()["errors"][0] == {
        "field": "to", "location": "query", "type": "period_reversed",
        "message_ja": "終了日（to）が開始日（from）より前です。", "message_en": "`to` is before `from`."}
    assert not_a_date.status_code == 422 and not_a_date.json()["errors"][0]["field"] == "from"
    assert not_a_date.json()["errors"][0]["message_ja"].startswith("日付")
    assert counter.status_code == 403
    assert before == after


def rebuild_settings(url: str, infrastructure, kafka_namespace: str, namespace_access) -> ServiceSettings:
    """What `rebuild-reports` reads from the environment, for referral's database at `url`."""
    referral = namespace_access.credentials("referral")
    security = {"kafka_username": referral.username, "kafka_password": referral.password} if referral \
        else {"kafka_security_protocol": "PLAINTEXT"}
    return ServiceSettings(http_port=1, database_url=url, kafka_bootstrap=infrastructure.kafka_bootstrap,
                           topic_namespace=kafka_namespace, **security)


async def consultations_counted(url: str) -> set[uuid.UUID]:
    conn = await asyncpg.connect(url)
    try:
        return {r["consultation_id"] for r in await conn.fetch("SELECT consultation_id FROM report_consultations")}
    finally:
        await conn.close()


async def test_a_rebuild_refuses_to_drop_figures_whose_events_retention_already_deleted(
        migrated_database, infrastructure, kafka_namespace, namespace_access):
    url = await migrated_database("referral")
    settings = rebuild_settings(url, infrastructure, kafka_namespace, namespace_access)
    old, kept = consultation_event(), consultation_event()  # one case: one partition, in this order
    *_, sent = await publish(infrastructure, kafka_namespace, INTAKE_CASES, old, kept)
    await rebuild(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
    await admin.start()
    try:  # as retention would: the partition's oldest record is gone
        await admin.delete_records({TopicPartition(sent.topic, sent.partition): RecordsToDelete(before_offset=1)})
    finally:
        await admin.close()

    with pytest.raises(LogIncomplete):
        await rebuild(settings)
    unchanged = await consultations_counted(url)
    await rebuild(settings, accept_partial=True)
    partial = await consultations_counted(url)

    assert unchanged == {old.consultation_id, kept.consultation_id}, "refused: nothing changed"
    assert partial == {kept.consultation_id}, "told to, it rebuilds from what the log still holds"


async def test_an_event_the_service_projects_just_before_a_rebuild_empties_the_read_model_is_counted_again(
        service_process, infrastructure, kafka_namespace, namespace_access, monkeypatch):
    referral = await service_process("referral")
    settings = rebuild_settings(referral.database_url, infrastructure, kafka_namespace, namespace_access)
    early, late = consultation_event(), consultation_event()
    await publish(infrastructure, kafka_namespace, INTAKE_CASES, early)
    await eventually(lambda: consultations_counted(referral.database_url), until=lambda c: len(c) == 1)
    empty_the_model = ReportsStore.reset

    async def once_the_service_has_projected_one_more(store: ReportsStore) -> None:
        # The rebuild has started: the service consumes and projects one more consultation first.
        await publish(infrastructure, kafka_namespace, INTAKE_CASES, late)
        await eventually(lambda: consultations_counted(referral.database_url), until=lambda c: len(c) == 2)
        await empty_the_model(store)

    monkeypatch.setattr(ReportsStore, "reset", once_the_service_has_projected_one_more)
    await rebuild(settings)

    assert await consultations_counted(referral.database_url) == {early.consultation_id, late.consultation_id}, (
        "the log's end is read after the model is emptied, so what the service had projected is applied again")


async def test_a_rebuild_counts_again_the_service_s_own_events_still_waiting_in_its_outbox(
        migrated_database, infrastructure, kafka_namespace, namespace_access):
    url = await migrated_database("referral")  # no service runs: nothing relays the outbox
    requested = ReferralRequested.model_validate({**ReferralRequested.model_json_schema()["examples"][0],
                                                  "referral_id": str(uuid.uuid4())})
    conn = await asyncpg.connect(url)
    try:
        async with unit_of_work_on(conn, Repository, on_append=project_appended) as uow:
            uow.emit(requested)
        before = await conn.fetchval("SELECT count(*) FROM report_referrals")
        done = await rebuild(rebuild_settings(url, infrastructure, kafka_namespace, namespace_access))
        after = await conn.fetch("SELECT referral_id FROM report_referrals")
    finally:
        await conn.close()

    assert before == 1, "projected as it was appended"
    assert [r["referral_id"] for r in after] == [requested.referral_id], "in the model again, not yet in the log"
    assert done.events == 1


async def test_referral_killed_between_its_commit_and_its_offset_commit_counts_each_event_once(
        service_process, scratch_databases, infrastructure, kafka_namespace, auth_headers):
    database = await scratch_databases.create("referral")
    doomed = await service_process("referral", database_url=database,
                                   extra_env={"TSUNAGU_FAILPOINT": "after-commit-before-ack"})
    await publish(infrastructure, kafka_namespace, INTAKE_CASES,
                  consultation_event(case_id=str(uuid.uuid4()), occurred_at=datetime.now(UTC).isoformat()))
    await eventually(lambda: asyncio.sleep(0, not doomed.running), until=bool)
    assert doomed.process.returncode == -9, "SIGKILL right after the consultation's database commit"

    restarted = await service_process("referral", database_url=database, migrate=False)
    stack = Stack(None, restarted, auth_headers, "")
    summary = await eventually(lambda: report(stack, "summary"), until=lambda s: s["referrals"] == 4)
    async with httpx.AsyncClient(base_url=restarted.url, timeout=10) as client:
        metrics = (await client.get("/metrics")).text

    assert (summary["consultations"], summary["people"], summary["needs_per_person"]) == (1, 1, 4.0)
    assert 'tsunagu_consumed_events_total{consumer="referral",outcome="duplicate"' in metrics, (
        "the event whose offset was never committed came again, and changed nothing")
