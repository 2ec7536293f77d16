"""Benchmark: the whole loop, from a consultation posted at the counter to the partner's verified
webhook, at rising rates, open loop.

    make bench   (or: .venv/bin/python tests/benchmarks/whole_loop.py --rates 10,25,40,50,60,80,100,120,140,160)

intake, referral and partner-notification run as real processes on scratch databases and a topic
namespace of their own. One partner is registered with a webhook on a loopback receiver and routed
for one need; every consultation has that need and the person's consent for that partner. The
partner subscribes to the referrals addressed to it and to consent withdrawals (the API's example
subscription); `--every-event` subscribes it to everything it may see instead.

It first prints how long a fixed pure-Python loop takes here: the services' CPU figures move with
the machine's speed, which on a shared virtual machine changes from one run to the next.

First `--warmup` consultations are posted at the first rate and not counted (the first burst after
start opens connections and runs code for the first time; its p99 is printed). After the services'
idle CPU is measured, single consultations follow pauses of 0.2 to 3 s, each timed and printed: what
a counter sees on a quiet day. For each rate,
consultations are posted on a fixed schedule (one task per request at its time,
whatever the answers take) for a bounded number of seconds; each is timed from its POST to the
partner's receipt of the referral's webhook, counted only if the Standard Webhooks signature
verifies with the partner's secret. Then the next rate starts once every accepted consultation was
delivered, or nothing arrived for `--quiet` seconds. The run stops by itself after the last rate, or
after two rates in a row miss the target.

Per rate it prints: sent, delivered, lost, p50/p95/p99 (ms), CPU ms per consultation per service
(utime + stime from /proc/<pid>/stat over the rate's whole phase; in brackets net of what the
service spends idle, measured for 5 s after the warm-up), and each service's RSS at the end of the phase;
below it, the CPU the same phase cost the Kafka broker, PostgreSQL and this process (the load generator
and the receiver) per consultation, net of their idle CPU. The knee is the highest rate with
p99 <= 100 ms and nothing lost or refused. The load generator and the receiver share one process
and the machine's two cores with the services: the figures are upper bounds on latency. With
`--soak-minutes N` it posts at the first rate for N one-minute phases instead and prints each, then
each service's RSS and CPU per consultation in the first and the last minute. Prints
figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tsunagu_servicehost.auth import Role
from tsunagu_teststack.bench import running
from tsunagu_teststack.receivers import Received, Receiver, ReceiverServer
from tsunagu_teststack.services import ServiceProcess
from tsunagu_teststack.tokens import bearer_token

REQUESTED = "tsunagu.referral.requested.v1"
NEED = "no_food"
TARGET_P99_MS = 100.0
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def bearer(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer_token(role, 'bench')}"}


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of a process (all its threads), in seconds; with `children`, also what its exited
    children used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15 if children else 13]) / TICKS


def shared_infrastructure_pids() -> dict[str, list[int]]:
    """The running Kafka broker's JVM and PostgreSQL's postmaster (its backends are its children)."""
    found: dict[str, list[int]] = {"kafka": [], "postgres": []}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"kafka.Kafka" in argv:
            found["kafka"].append(int(entry))
        elif argv and argv[0].endswith(b"/bin/postgres"):
            found["postgres"].append(int(entry))
    return found


def infrastructure_cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU of Kafka, of PostgreSQL (the postmaster, its live backends and those that exited), and of
    this process (the load generator and the partner's receiver)."""
    spent = {"kafka": sum(cpu_seconds(p) for p in pids["kafka"]), "postgres": 0.0}
    for postmaster in pids["postgres"]:
        spent["postgres"] += cpu_seconds(postmaster, children=True)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == postmaster:
                    spent["postgres"] += (int(fields[11]) + int(fields[12])) / TICKS
    spent["load generator"] = cpu_seconds(os.getpid())
    return spent


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KB / 1024


@dataclass
class Phase:
    rate: float
    sent_at: dict[str, float] = field(default_factory=dict)  # case id -> loop time of the POST
    refused: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    unverified: int = 0
    cpu_ms: dict[str, float] = field(default_factory=dict)
    net_cpu_ms: dict[str, float] = field(default_factory=dict)  # less what the service spends idle
    infrastructure_ms: dict[str, float] = field(default_factory=dict)  # Kafka, PostgreSQL, this process
    rss: dict[str, float] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return len(self.sent_at) + self.refused

    @property
    def delivered(self) -> int:
        return len(self.latencies_ms)

    @property
    def lost(self) -> int:
        return self.sent - self.delivered

    def quantile(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float("nan")

    @property
    def on_target(self) -> bool:
        return self.lost == 0 and self.quantile(0.99) <= TARGET_P99_MS


class Partner:
    """The partner's side: its id, its webhook secret, and what its receiver got."""

    def __init__(self, partner_id: str, secret: str, receiver: Receiver):
        self.partner_id, self.webhook, self.receiver = partner_id, Webhook(secret), receiver

    def verified_since_last(self) -> tuple[list[Received], int]:
        """The referral webhooks received since the last call whose signature verifies, and how many did
        not. They are taken out of the receiver: kept, a soak's tens of thousands would be walked by
        each of this process's full collections, longer and longer pauses in what it times."""
        fresh, self.receiver.received = self.receiver.received, []
        good, bad = [], 0
        for r in fresh:
            try:
                self.webhook.verify(r.body, r.headers)
            except WebhookVerificationError:
                bad += 1
                continue
            if r.event["type"] == REQUESTED:
                good.append(r)
        return good, bad


SUBSCRIPTION = {"event_types": [REQUESTED, "tsunagu.intake.consent-withdrawn.v1"], "need_categories": [NEED]}
"""What the bench's food bank subscribes to, as the API's example partner does: the referrals addressed
to it and consent withdrawals. With `--every-event` it takes everything it may see (for each
consultation, also its registration and the referral sheet: three webhooks instead of one)."""


async def partner_routed_for(need: str, partners: ServiceProcess, referral: ServiceProcess,
                             server: ReceiverServer, every_event: bool = False) -> Partner:
    receiver = Receiver()
    async with httpx.AsyncClient(timeout=30, headers=bearer(Role.COORDINATOR)) as http:
        created = await http.post(f"{partners.url}/v1/partners", json={
            "name": "ざまフードバンク", "need_categories": [need], "areas": ["142166"],
            "contact": {"department": "相談窓口", "email": "desk@example.org"},
            "webhook_url": server.add("partner", receiver)})
        created.raise_for_status()
        body = created.json()
        if not every_event:
            subscribed = await http.put(f"{partners.url}/v1/partners/{body['partner_id']}/subscription",
                                        json=SUBSCRIPTION)
            subscribed.raise_for_status()
        routed = await http.put(f"{referral.url}/v1/routing/{need}",
                                json={"candidates": [{"kind": "partner", "partner_id": body["partner_id"]}]})
        routed.raise_for_status()
    return Partner(body["partner_id"], body["webhook_secret"], receiver)


def birth_date(i: int) -> str:
    """A birth date of its own for the i-th person (one per day from 1 January 1940)."""
    return (date(1940, 1, 1) + timedelta(days=i)).isoformat()


async def post_on_schedule(http: httpx.AsyncClient, partner: Partner, phase: Phase, seconds: float,
                           first: int) -> None:
    """Open loop: request i starts at began + i/rate, whatever earlier answers take."""
    loop = asyncio.get_running_loop()
    consents = [{"recipient": {"kind": "partner", "partner_id": partner.partner_id}, "purpose": "referral",
                 "method": "written"}]

    async def post(i: int) -> None:
        at = loop.time()
        try:
            response = await http.post("/v1/consultations", json={
                # Different people: a kana name and birth date of their own (none is a possible duplicate).
                "person": {"name": f"利用者 {i}", "name_kana": "りようしゃ", "birth_date": birth_date(i)},
                "counter": "self_reliance", "channel": "counter", "urgency": "high", "needs": [NEED],
                "primary_need": NEED, "consents": consents})
        except httpx.HTTPError:
            phase.refused += 1
            return
        if response.status_code != 201:
            phase.refused += 1
            return
        phase.sent_at[response.json()["case_id"]] = at

    began, tasks = loop.time(), []
    for i in range(int(phase.rate * seconds)):
        await asyncio.sleep(max(0.0, began + i / phase.rate - loop.time()))
        tasks.append(asyncio.create_task(post(first + i)))
    await asyncio.gather(*tasks)


async def deliveries_settled(partner: Partner, phase: Phase, quiet_s: float) -> None:
    """Collect verified deliveries until every accepted consultation has one, or none came for `quiet_s`."""
    loop = asyncio.get_running_loop()
    last_change = loop.time()
    while True:
        good, bad = partner.verified_since_last()
        phase.unverified += bad
        for r in good:
            sent = phase.sent_at.get(r.event["subject"])
            if sent is not None:
                phase.latencies_ms.append((r.at - sent) * 1000)
        if good or bad:
            last_change = loop.time()
        if phase.delivered >= len(phase.sent_at) or loop.time() - last_change > quiet_s:
            return
        await asyncio.sleep(0.05)


async def idle_cpu_ms_per_s(services: dict[str, ServiceProcess], seconds: float) -> dict[str, float]:
    """What each service, Kafka, PostgreSQL and this process spend with nothing to do (sweeps,
    heartbeats, gauges, other clients of the shared broker and database), in CPU ms per second."""
    shared = shared_infrastructure_pids()
    before = {name: cpu_seconds(s.process.pid) for name, s in services.items()}
    shared_before = infrastructure_cpu_seconds(shared)
    await asyncio.sleep(seconds)
    idle = {name: (cpu_seconds(s.process.pid) - before[name]) * 1000 / seconds for name, s in services.items()}
    for name, spent in infrastructure_cpu_seconds(shared).items():
        idle[name] = (spent - shared_before[name]) * 1000 / seconds
    return idle


async def run_phase(http: httpx.AsyncClient, partner: Partner, services: dict[str, ServiceProcess], rate: float,
                    seconds: float, quiet_s: float, first: int, idle: dict[str, float] | None = None) -> Phase:
    phase = Phase(rate)
    loop = asyncio.get_running_loop()
    pids = {name: s.process.pid for name, s in services.items()}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    shared = shared_infrastructure_pids()
    shared_before = infrastructure_cpu_seconds(shared)
    began = loop.time()
    await post_on_schedule(http, partner, phase, seconds, first)
    await deliveries_settled(partner, phase, quiet_s)
    took = loop.time() - began
    for name, pid in pids.items():
        spent = (cpu_seconds(pid) - cpu_before[name]) * 1000
        phase.cpu_ms[name] = spent / max(1, phase.sent)
        phase.net_cpu_ms[name] = (spent - (idle or {}).get(name, 0.0) * took) / max(1, phase.sent)
        phase.rss[name] = rss_mb(pid)
    for name, spent in infrastructure_cpu_seconds(shared).items():
        net = (spent - shared_before[name]) * 1000 - (idle or {}).get(name, 0.0) * took
        phase.infrastructure_ms[name] = net / max(1, phase.sent)
    return phase


def report(phase: Phase, names: list[str]) -> None:
    cpu = "  ".join(f"{phase.cpu_ms[n]:5.1f} ({phase.net_cpu_ms[n]:4.1f})" for n in names)
    rss = "  ".join(f"{phase.rss[n]:5.0f}" for n in names)
    mark = "ok" if phase.on_target else "--"
    print(f"{phase.rate:6g}/s {phase.sent:5d} {phase.delivered:5d} {phase.lost:5d}  "
          f"{phase.quantile(.5):7.1f} {phase.quantile(.95):7.1f} {phase.quantile(.99):7.1f} {mark}  "
          f"cpu ms/consultation {cpu}   rss MB {rss}"
          + (f"  (refused {phase.refused}, bad signatures {phase.unverified})"
             if phase.refused or phase.unverified else ""), flush=True)
    print(" " * 9 + "cpu ms/consultation elsewhere: "
          + ", ".join(f"{name} {ms:.1f}" for name, ms in phase.infrastructure_ms.items()), flush=True)


QUIET_SPELLS_S = (0.2, 0.5, 1.0, 2.0, 3.0)
"""Pauses before single consultations: a counter's day is mostly quiet, and a consultation then must
not wait for a consumer's or a sender's own pause."""


async def after_quiet_spells(http: httpx.AsyncClient, partner: Partner, services: dict[str, ServiceProcess],
                             quiet_s: float, first: int) -> list[float]:
    """The time from POST to verified webhook of one consultation after each of `QUIET_SPELLS_S`."""
    latencies = []
    for n, spell in enumerate(QUIET_SPELLS_S):
        await asyncio.sleep(spell)
        phase = await run_phase(http, partner, services, 1.0, 1.0, quiet_s, first + n)
        latencies += phase.latencies_ms or [float("nan")]
    return latencies


def python_loop_ms(iterations: int = 2_000_000, tries: int = 5) -> float:
    """This machine's speed at pure Python, the services' own work: the best of `tries` runs of a fixed
    loop, in ms. On a shared virtual machine it moves between runs, and every figure below with it."""
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        total = 0
        for i in range(iterations):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1000


async def main(rates: list[float], seconds: float, quiet_s: float, warmup: int, every_event: bool,
               soak_minutes: int = 0) -> None:
    print(f"this machine: a fixed Python loop takes {python_loop_ms():.0f} ms (best of 5; the services' "
          "CPU figures move with it from run to run)", flush=True)
    async with running("intake", "referral", "partner-notification") as services:
        names = list(services)
        async with ReceiverServer() as server:
            partner = await partner_routed_for(NEED, services["partner-notification"], services["referral"],
                                               server, every_event)
            print("the partner subscribes to " + ("every event it may see" if every_event else
                  ", ".join(SUBSCRIPTION["event_types"]) + f" about {NEED}"))
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            async with httpx.AsyncClient(base_url=services["intake"].url, timeout=60, headers=bearer(Role.COUNTER),
                                         limits=limits) as http:
                # Warm-up at the first rate: the first burst after start opens connections (HTTP
                # keep-alive, the partner's receiver) and runs code paths for the first time.
                warm = await run_phase(http, partner, services, rates[0], warmup / rates[0], quiet_s, 0)
                print(f"warm-up: {warm.delivered}/{warm.sent} delivered at {rates[0]:g}/s, p99 "
                      f"{warm.quantile(.99):.1f} ms (not counted)")
                # This process times what it posts and receives: what it built so far is moved out of
                # the collector's sight, or each of its full collections (40-60 ms, measured) lands
                # in the latencies it prints. The youngest generation keeps its default threshold:
                # httpx's responses here are reference cycles, and collected 700 allocations at a
                # time they never add up to a long pause.
                gc.collect()
                gc.freeze()
                idle = await idle_cpu_ms_per_s(services, 5.0)
                print("idle CPU ms/s: " + ", ".join(f"{n} {ms:.1f}" for n, ms in idle.items())
                      + "; cpu ms/consultation below: services all (net of idle); elsewhere net of idle")
                quiet = await after_quiet_spells(http, partner, services, quiet_s, warmup)
                print(f"one consultation after each quiet spell of {', '.join(f'{g:g}' for g in QUIET_SPELLS_S)} s: "
                      + ", ".join(f"{ms:.0f}" for ms in quiet) + " ms")
                warmup += len(QUIET_SPELLS_S)
                print(f"target: p99 <= {TARGET_P99_MS:g} ms from POST to the partner's verified webhook, "
                      f"nothing lost; {seconds:g} s per rate")
                print(f"{'rate':>8} {'sent':>5} {'deliv':>5} {'lost':>5}  {'p50':>7} {'p95':>7} {'p99':>7} ms     "
                      f"services: {', '.join(names)}")
                if soak_minutes:
                    await soak(http, partner, services, rates[0], soak_minutes, quiet_s, warmup, idle)
                    return
                knee, misses, first = None, 0, warmup
                for rate in rates:
                    phase = await run_phase(http, partner, services, rate, seconds, quiet_s, first, idle)
                    first += phase.sent
                    report(phase, names)
                    if phase.on_target:
                        knee, misses = rate if knee is None or rate > knee else knee, 0
                    else:
                        misses += 1
                        if misses == 2:
                            print("two rates in a row missed the target: stopping")
                            break
        print(f"knee: {f'{knee:g} consultations/s' if knee is not None else 'none of the rates'} "
              f"(highest rate with p99 <= {TARGET_P99_MS:g} ms and nothing lost)")


async def soak(http: httpx.AsyncClient, partner: Partner, services: dict[str, ServiceProcess], rate: float,
               minutes: int, quiet_s: float, first: int, idle: dict[str, float]) -> None:
    """`minutes` one-minute phases at one rate, each printed: CPU per consultation and RSS should stay
    flat while the databases and topics grow."""
    names, phases = list(services), []
    for _ in range(minutes):
        phase = await run_phase(http, partner, services, rate, 60.0, quiet_s, first, idle)
        first += phase.sent
        phases.append(phase)
        report(phase, names)
    begin, end = phases[0], phases[-1]
    print(f"soak: {sum(p.sent for p in phases)} consultations at {rate:g}/s over {minutes} min, "
          f"{sum(p.lost for p in phases)} lost, {sum(not p.on_target for p in phases)} minute(s) off target")
    for name in names:
        print(f"  {name}: RSS {begin.rss[name]:.0f} -> {end.rss[name]:.0f} MB, cpu ms/consultation "
              f"{begin.cpu_ms[name]:.1f} -> {end.cpu_ms[name]:.1f} (first minute -> last)")
    for name in begin.infrastructure_ms:
        print(f"  {name}: cpu ms/consultation {begin.infrastructure_ms[name]:.1f} -> {end.infrastructure_ms[name]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="10,25,40,50,60,80,100,120,140,160",
                        help="consultations per second, comma-separated, in the order to run them")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long to post at each rate")
    parser.add_argument("--quiet", type=float, default=10.0,
                        help="a rate's deliveries have settled once nothing arrived for this long (s)")
    parser.add_argument("--warmup", type=int, default=100,
                        help="consultations posted first at the first rate, not counted")
    parser.add_argument("--every-event", action="store_true",
                        help="the partner subscribes to every event it may see (three webhooks per consultation)")
    parser.add_argument("--soak-minutes", type=int, default=0,
                        help="instead of rising rates: this many one-minute phases at the first rate, each printed")
    args = parser.parse_args()
    asyncio.run(main([float(r) for r in args.rates.split(",")], args.seconds, args.quiet, args.warmup,
                     args.every_event, args.soak_minutes))
