"""Load check: do referrals that race their consent all reach the partner?

    make bench-held   (or: .venv/bin/python tests/benchmarks/held_referrals.py --rate 40 --seconds 20)

intake, referral and partner-notification run as real processes on scratch databases and a topic
namespace of their own; one partner with a loopback webhook receiver is routed for one need. Each
consultation has that need and the person's consent for the partner, so partner-notification reads
the consent (intake's topic) and the referral (referral's topic) on separate consumers at the same
time. Consultations are posted at a steady rate for a bounded time; then the partner's deliveries
are awaited until they stop changing. Prints figures; asserts nothing.

- posted: consultations intake accepted;
- delivered: referrals the receiver got (distinct referral ids);
- held: referrals still in partner-notification's `held_events` at the end;
- lost: posted, but neither delivered nor held;
- released by the sweep: held events the periodic sweep had to release (partner-notification's
  /metrics), i.e. what the consent handlers left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import asyncpg
import httpx

from tsunagu_servicehost.auth import Role
from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.bench import running, steadily
from tsunagu_teststack.services import ServiceProcess
from tsunagu_teststack.tokens import bearer_token

REQUESTED = "tsunagu.referral.requested.v1"
NEED = "no_food"


def bearer(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer_token(role, 'bench')}"}


async def partner_routed_for(need: str, partners: ServiceProcess, referral: ServiceProcess, url: str) -> str:
    async with httpx.AsyncClient(timeout=30, headers=bearer(Role.COORDINATOR)) as http:
        created = await http.post(f"{partners.url}/v1/partners", json={
            "name": "ざまフードバンク", "need_categories": [need], "areas": ["142166"],
            "contact": {"department": "相談窓口", "email": "desk@example.org"}, "webhook_url": url})
        created.raise_for_status()
        partner_id = created.json()["partner_id"]
        routed = await http.put(f"{referral.url}/v1/routing/{need}",
                                json={"candidates": [{"kind": "partner", "partner_id": partner_id}]})
        routed.raise_for_status()
    return partner_id


async def post_steadily(intake_url: str, partner_id: str, rate: float, seconds: float) -> tuple[int, Counter]:
    """One consultation every 1/rate s for `seconds`; returns how many were accepted, and the other
    answers (status, or the client's error) with their counts."""
    consents = [{"recipient": {"kind": "partner", "partner_id": partner_id}, "purpose": "referral",
                 "method": "written"}]
    outcomes: list[str] = []

    async def post(http: httpx.AsyncClient, i: int) -> None:
        try:
            response = await http.post("/v1/consultations", json={
                "person": {"name": f"利用者 {i}", "name_kana": "りようしゃ", "birth_date": "1968-04-02"},
                "counter": "self_reliance", "channel": "counter", "urgency": "high", "needs": [NEED],
                "primary_need": NEED, "consents": consents})
            outcomes.append(str(response.status_code))
        except httpx.HTTPError as exc:
            outcomes.append(type(exc).__name__)

    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=intake_url, timeout=60, headers=bearer(Role.COUNTER),
                                 limits=limits) as http:
        await steadily(rate, seconds, lambda i: post(http, i))
    answers = Counter(outcomes)
    return answers.pop("201", 0), answers


async def settled(receiver: Receiver, partners_db: str, quiet_s: float, limit_s: float) -> None:
    """Until nothing changed for `quiet_s` (bounded by `limit_s`): deliveries received and held rows."""
    conn = await asyncpg.connect(partners_db)
    try:
        last, quiet_since, began = None, time.monotonic(), time.monotonic()
        while time.monotonic() - began < limit_s and time.monotonic() - quiet_since < quiet_s:
            now = (len(receiver.received), await conn.fetchval("SELECT count(*) FROM held_events"),
                   await conn.fetchval("SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending')"))
            if now != last:
                last, quiet_since = now, time.monotonic()
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def released_by_sweep(partners: ServiceProcess) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(f"{partners.url}/metrics")).text
    for line in metrics.splitlines():
        if line.startswith("tsunagu_partners_held_events_released_total "):
            return str(int(float(line.split()[1])))
    return "n/a (no sweep in this version)"


async def main(rate: float, seconds: float, quiet_s: float) -> None:
    async with running("intake", "referral", "partner-notification") as services:
        intake, referral, partners = services.values()
        async with ReceiverServer() as server:
            receiver = Receiver()
            partner_id = await partner_routed_for(NEED, partners, referral, server.add("partner", receiver))
            began = time.perf_counter()
            posted, refused = await post_steadily(intake.url, partner_id, rate, seconds)
            posting = time.perf_counter() - began
            await settled(receiver, partners.database_url, quiet_s, limit_s=300)
            referrals = {r.event["data"]["referral_id"] for r in receiver.of_type(REQUESTED)}
        swept = await released_by_sweep(partners)
        conn = await asyncpg.connect(partners.database_url)
        try:
            held = await conn.fetchval("SELECT count(*) FROM held_events WHERE headers->>'ce_type' = $1", REQUESTED)
            statuses = dict(await conn.fetch("SELECT status, count(*) FROM deliveries WHERE event_type = $1 "
                                             "GROUP BY status", REQUESTED))
        finally:
            await conn.close()
        delivered = len(referrals)
        print(f"rate: {rate:g} consultations/s for {seconds:g} s (posting took {posting:.1f} s), "
              f"one need routed to one partner, consent for it in each")
        print(f"posted:    {posted:5d}   (refused or failed: {sum(refused.values())} {dict(refused) or ''})")
        print(f"delivered: {delivered:5d}   (referrals the partner's receiver got)")
        print(f"held:      {held:5d}   (still in held_events after the deliveries settled)")
        print(f"lost:      {posted - delivered - held:5d}   (neither delivered nor held)")
        print(f"released by the sweep: {swept}")
        print(f"partner-notification's referral deliveries by status: {statuses}")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=40.0, help="consultations per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to post")
    parser.add_argument("--quiet", type=float, default=15.0,
                        help="the deliveries have settled once nothing changed for this long (s)")
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds, args.quiet))
