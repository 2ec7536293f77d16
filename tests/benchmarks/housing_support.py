"""Housing support under steady load: supports opened from housing referrals, and missed check-ins
reaching the lead partner.

    make bench-housing   (or: .venv/bin/python tests/benchmarks/housing_support.py --rate 20 --seconds 15)

intake, referral, housing-support and partner-notification run as real processes on scratch
databases and a topic namespace of their own; a 居住支援法人 with a loopback webhook is a council
member. Prints figures; asserts nothing.

1. Consultations with a housing need (and the person's housing_support consent for the partner) are
   posted at a steady rate; each case's support is watched for in housing support's database:
   opened, doubled (more than one per case), lost, and the time from POST to the support (p50/p99).
2. Every support is led by the partner and moved in with one check-in due a few seconds later and no
   grace; nobody records it. The time from the deadline to the partner's verified CheckInMissed
   webhook is measured (the timer runs every TSUNAGU_HOUSING_TIMER_INTERVAL_S, default 15 s).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import datetime, timedelta

import asyncpg
import httpx
from standardwebhooks.webhooks import Webhook

from tsunagu_contracts.japan import JST
from tsunagu_servicehost.auth import Role
from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.bench import running, steadily
from tsunagu_teststack.services import ServiceProcess
from tsunagu_teststack.tokens import bearer_token

MISSED = "tsunagu.housing.check-in-missed.v1"
HOME = {"landlord": "ざま不動産", "address": "座間市1-1", "moved_in_on": "2027-01-15"}


def bearer(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer_token(role, 'bench')}"}


def percentile(values: list[float], p: float) -> float:
    if len(values) < 2:
        return (values or [float("nan")])[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


async def housing_partner(partners: ServiceProcess, housing: ServiceProcess, url: str) -> dict:
    async with httpx.AsyncClient(timeout=30) as http:
        created = (await http.post(f"{partners.url}/v1/partners", headers=bearer(Role.COORDINATOR), json={
            "name": "居住支援法人 すまいる", "need_categories": ["housing"], "areas": ["142166"],
            "contact": {"department": "相談窓口", "email": "desk@sumairu.example"}, "webhook_url": url})).json()
        await http.put(f"{partners.url}/v1/partners/{created['partner_id']}/subscription",
                       headers={"Authorization": f"Bearer {created['api_token']}"}, json={"event_types": [MISSED]})
        member = (await http.post(f"{housing.url}/v1/members", headers=bearer(Role.COUNCIL), json={
            "kind": "partner", "partner_id": created["partner_id"], "name": "居住支援法人 すまいる",
            "takes_on": ["check_ins"]})).json()
    return created | {"member_id": member["member_id"]}


async def post_steadily(intake_url: str, partner_id: str, rate: float, seconds: float,
                        posted: dict[str, float]) -> None:
    """One consultation every 1/rate s; fills case id -> monotonic time the POST was answered."""

    async def post(http: httpx.AsyncClient, i: int) -> None:
        response = await http.post("/v1/consultations", json={
            "person": {"name": f"利用者 {i}", "name_kana": "りようしゃ", "birth_date": "1951-07-07"},
            "counter": "housing", "channel": "counter", "urgency": "high", "needs": ["housing"],
            "primary_need": "housing", "consents": [{"recipient": {"kind": "partner", "partner_id": partner_id},
                                                     "purpose": "housing_support", "method": "written"}]})
        if response.status_code == 201:
            posted[response.json()["case_id"]] = time.monotonic()

    async with httpx.AsyncClient(base_url=intake_url, timeout=60, headers=bearer(Role.COUNTER),
                                 limits=httpx.Limits(max_connections=64)) as http:
        await steadily(rate, seconds, lambda i: post(http, i))


async def watch_supports(housing_db: str, posted: dict[str, float], expected: int, limit_s: float
                         ) -> dict[str, float]:
    """Case id -> monotonic time its support was first seen (polled every 50 ms while posting, bounded)."""
    seen: dict[str, float] = {}
    conn = await asyncpg.connect(housing_db)
    try:
        began = time.monotonic()
        while len(seen) < expected and time.monotonic() - began < limit_s:
            for row in await conn.fetch("SELECT DISTINCT case_id::text FROM supports"):
                seen.setdefault(row["case_id"], time.monotonic())
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    return seen


async def main(rate: float, seconds: float, timer_s: float) -> None:
    async with running("intake", "referral", "housing-support", "partner-notification",
                       env={"housing-support": {"TSUNAGU_HOUSING_TIMER_INTERVAL_S": str(timer_s)}}) as services:
        intake, referral, housing, partners = services.values()
        async with ReceiverServer() as server:
            receiver = Receiver()
            partner = await housing_partner(partners, housing, server.add("sumairu", receiver))
            began = time.perf_counter()
            posted: dict[str, float] = {}
            watching = asyncio.create_task(watch_supports(housing.database_url, posted, expected=int(rate * seconds),
                                                          limit_s=120 + seconds))
            await post_steadily(intake.url, partner["partner_id"], rate, seconds, posted)
            posting = time.perf_counter() - began
            seen = await watching
            conn = await asyncpg.connect(housing.database_url)
            try:
                per_case = await conn.fetch("SELECT case_id::text, array_agg(support_id::text) AS ids "
                                            "FROM supports GROUP BY case_id")
            finally:
                await conn.close()
            doubled = sum(len(r["ids"]) > 1 for r in per_case)
            latencies = [(seen[c] - t) * 1000 for c, t in posted.items() if c in seen]
            print(f"supports: {rate:g} consultations/s with a housing need for {seconds:g} s "
                  f"(posting took {posting:.1f} s)")
            print(f"  posted {len(posted)}, supports opened {len(seen)}, doubled {doubled}, "
                  f"lost {len(set(posted) - set(seen))}")
            print(f"  POST to support opened: p50 {percentile(latencies, 50):.0f} ms, "
                  f"p99 {percentile(latencies, 99):.0f} ms, max {max(latencies):.0f} ms")

            support_ids = [r["ids"][0] for r in per_case]
            due = (datetime.now(JST) + timedelta(seconds=20)).replace(microsecond=0)
            rule = {"rules": [{"kind": "safety_contact", "grace_minutes": 0,
                               "rrule": f"DTSTART;TZID=Asia/Tokyo:{due:%Y%m%dT%H%M%S}\nRRULE:FREQ=DAILY;COUNT=1"}]}
            async with httpx.AsyncClient(base_url=housing.url, timeout=60, headers=bearer(Role.COUNCIL),
                                         limits=httpx.Limits(max_connections=16)) as http:
                async def move_in(sid: str) -> None:
                    await http.put(f"/v1/supports/{sid}/lead", json={"member_id": partner["member_id"]})
                    for stage, body in (("application", {}), ("contract", {}),
                                        ("move_in", {"tenancy": HOME, "check_in_schedule": rule})):
                        (await http.post(f"/v1/supports/{sid}/stage", json={"to_stage": stage, **body})
                         ).raise_for_status()
                await asyncio.gather(*(move_in(s) for s in support_ids))
            deadline_mono = time.monotonic() + (due - datetime.now(JST)).total_seconds()
            waited = time.monotonic()
            while len(receiver.of_type(MISSED)) < len(support_ids) and time.monotonic() - waited < 120:
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)
            missed = receiver.of_type(MISSED)
            for r in missed:
                Webhook(partner["webhook_secret"]).verify(r.body, r.headers)
            by_support: dict[str, int] = {}
            for r in missed:
                by_support[r.event["data"]["support_id"]] = by_support.get(r.event["data"]["support_id"], 0) + 1
            loop_to_mono = time.monotonic() - asyncio.get_running_loop().time()
            delays = [(r.at + loop_to_mono - deadline_mono) * 1000 for r in missed]
        print(f"missed check-ins: {len(support_ids)} tenancies, one check-in due at the same moment, none recorded "
              f"(timer every {timer_s:g} s)")
        print(f"  webhooks {len(missed)} for {len(by_support)} supports, doubled "
              f"{sum(n > 1 for n in by_support.values())}, lost {len(set(support_ids) - set(by_support))}")
        if delays:
            print(f"  deadline to verified webhook: p50 {percentile(delays, 50) / 1000:.1f} s, "
                  f"p99 {percentile(delays, 99) / 1000:.1f} s, max {max(delays) / 1000:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="consultations per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to post")
    parser.add_argument("--timer", type=float, default=15.0, help="housing support's timer interval (s)")
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds, args.timer))
