"""Benchmark: consultations per second through intake → Kafka → referral, on the real stack.

    make bench            (or: .venv/bin/python tests/benchmarks/intake_to_referral.py --count 400)

Starts intake and referral as real processes on scratch databases and a topic namespace of their
own, posts consultations (four needs each) with a few concurrent clients, and measures until the
referral service has opened every sheet and its four referrals. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
import httpx

from tsunagu_servicehost.auth import Role
from tsunagu_teststack.bench import running
from tsunagu_teststack.tokens import bearer_token

BODY = {
    "counter": "tax", "channel": "counter", "urgency": "high",
    "needs": ["rent_loan", "housing", "debt", "health"], "primary_need": "rent_loan",
}


def person(i: int) -> dict:
    return {"name": f"利用者 {i}", "name_kana": "りようしゃ", "birth_date": f"19{50 + i % 50:02d}-01-01"}


async def main(count: int, clients: int) -> None:
    async with running("intake", "referral") as services:
        intake, referral = services.values()
        headers = {"Authorization": f"Bearer {bearer_token(Role.COUNTER, 'bench')}"}
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(count):
            queue.put_nowait(i)
        latencies: list[float] = []

        async def client() -> None:
            async with httpx.AsyncClient(base_url=intake.url, timeout=30, headers=headers) as http:
                while not queue.empty():
                    i = queue.get_nowait()
                    began = time.perf_counter()
                    response = await http.post("/v1/consultations", json=BODY | {"person": person(i)})
                    response.raise_for_status()
                    latencies.append(time.perf_counter() - began)

        conn = await asyncpg.connect(referral.database_url)
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        posted = time.perf_counter() - started
        while await conn.fetchval("SELECT count(*) FROM referrals") < count * 4:
            await asyncio.sleep(0.05)
        done = time.perf_counter() - started
        await conn.close()
        latencies.sort()
        print(f"consultations: {count} (4 needs each), concurrent clients: {clients}")
        print(f"intake accepted:          {count / posted:7.1f} consultations/s "
              f"(POST p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
              f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.1f} ms)")
        print(f"end to end into referral: {count / done:7.1f} consultations/s "
              f"({count * 4 / done:.1f} referrals/s; all {count * 4} referrals after {done:.2f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.count, args.clients))
