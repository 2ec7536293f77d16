"""The fault matrix's harness: the whole loop (consultation → referral → partner webhook) under a
bounded, steady load while a fault is injected, then a reconciliation of everything it promised.

`loop_on(kafka_bootstrap, admin_dsn, kafka_admin)` builds intake, referral and partner-notification as real
processes on the infrastructure given (the shared stack, or a broker or database the test owns and
breaks), one partner with a loopback webhook receiver routed for one need, and each consultation
carries the person's consent for it. The client behaves as a counter would: a consultation answered
with 5xx or not answered at all is sent again with the same Idempotency-Key until it is accepted.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tsunagu_servicehost.auth import Role
from tsunagu_teststack.infrastructure import Infrastructure
from tsunagu_teststack.kafka_access import NamespaceAccess, close_namespace_access, open_namespace_access
from tsunagu_topics import KafkaCredentials
from tsunagu_teststack.bench import steadily
from tsunagu_teststack.databases import ScratchDatabases
from tsunagu_teststack.infrastructure import repo_root
from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.services import ServiceProcess
from tsunagu_teststack.tokens import bearer_token
from tsunagu_topics import ensure_topics
from tsunagu_topics.create import delete_namespace

NEED = "no_food"
REQUESTED = "tsunagu.referral.requested.v1"
SERVICES = ("intake", "referral", "partner-notification")
REPORT = repo_root() / "var" / "test-output" / "fault-matrix.txt"


def bearer(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer_token(role, 'faults')}"}


@dataclass
class Report:
    fault: str
    load: str
    consultations: int = 0
    events_checked: int = 0
    lost: int = 0
    doubled: int = 0
    held: int = 0
    outbox_backlog: int = 0
    resent_by_receiver: int = 0
    client_retries: int = 0
    latency_ms: dict = field(default_factory=dict)
    recovery_s: list = field(default_factory=list)

    def write(self) -> None:
        """Printed, and kept in var/test-output/fault-matrix.txt, one line per run of a fault."""
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        with open(REPORT, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M')} {self.line()}\n")
        print(self.line())

    def line(self) -> str:
        lat = ", ".join(f"{k} {v:.0f} ms" for k, v in self.latency_ms.items())
        rec = ", ".join(f"{r:.1f}" for r in self.recovery_s) or "-"
        return (f"{self.fault}: {self.load}; consultations {self.consultations}, events checked "
                f"{self.events_checked}; lost {self.lost}, doubled {self.doubled}, held {self.held}, outbox "
                f"backlog {self.outbox_backlog}; same webhook sent again {self.resent_by_receiver}; client "
                f"retries {self.client_retries}; POST to webhook {lat}; time to recover (s) {rec}")


class Loop:
    def __init__(self, kafka_bootstrap: str, databases: ScratchDatabases, log_dir: Path, namespace: str,
                 access: NamespaceAccess):
        self.kafka, self.databases, self.log_dir, self.namespace = kafka_bootstrap, databases, log_dir, namespace
        self.access = access
        self.services: dict[str, ServiceProcess] = {}
        self.receiver = Receiver()
        self.partner: dict = {}
        self.posted: dict[str, float] = {}   # case id -> when intake accepted it (monotonic)
        self.retries = 0

    async def start(self, server: ReceiverServer, **env: dict[str, str]) -> None:
        for name in SERVICES:
            extra = {"TSUNAGU_TOPIC_NAMESPACE": self.namespace, "TSUNAGU_INSTANCE_ID": f"{name}-1",
                     **env.get(name.replace("-", "_"), {})}
            if name == "partner-notification":
                extra |= {"TSUNAGU_PARTNERS_INTAKE_URL": self.services["intake"].internal_url,
                          "TSUNAGU_PARTNERS_RETRY_SCALE": "0.001", "TSUNAGU_PARTNERS_TIMEOUT_S": "5"}
            service = ServiceProcess(name, kafka_bootstrap=self.kafka, database_url=await self.databases.create(name),
                                     log_dir=self.log_dir, extra_env=extra,
                                     kafka_credentials=self.access.credentials(name))
            await service.migrate()
            await service.start()
            self.services[name] = service
        await asyncio.gather(*(self.ready(s) for s in self.services.values()))
        async with httpx.AsyncClient(timeout=30, headers=bearer(Role.COORDINATOR)) as http:
            created = await http.post(f"{self.services['partner-notification'].url}/v1/partners", json={
                "name": "ざまフードバンク", "need_categories": [NEED], "areas": ["142166"],
                "contact": {"department": "相談窓口", "email": "desk@example.org"},
                "webhook_url": server.add("partner", self.receiver)})
            created.raise_for_status()
            self.partner = created.json()
            routed = await http.put(f"{self.services['referral'].url}/v1/routing/{NEED}", json={
                "candidates": [{"kind": "partner", "partner_id": self.partner["partner_id"]}]})
            routed.raise_for_status()

    @staticmethod
    async def ready(service: ServiceProcess, limit_s: float = 120) -> float:
        """Wait (bounded) until the service's /readyz is 200; returns how long that took."""
        began = time.monotonic()
        async with httpx.AsyncClient(base_url=service.url, timeout=2) as http:
            while time.monotonic() - began < limit_s:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return time.monotonic() - began
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"{service.service} not ready after {limit_s} s:\n{service.log()}")

    async def consult(self, http: httpx.AsyncClient, i: int) -> None:
        """Sent until accepted, with the same Idempotency-Key, as a counter would (bounded)."""
        key = str(uuid.uuid4())
        body = {"person": {"name": f"利用者 {i}", "name_kana": "りようしゃ", "birth_date": "1968-04-02"},
                "counter": "self_reliance", "channel": "counter", "urgency": "high", "needs": [NEED],
                "primary_need": NEED, "consents": [{"recipient": {"kind": "partner",
                                                                   "partner_id": self.partner["partner_id"]},
                                                     "purpose": "referral", "method": "written"}]}
        for attempt in range(600):
            try:
                response = await http.post(f"{self.services['intake'].url}/v1/consultations", json=body,
                                           headers={"Idempotency-Key": key})
                if response.status_code in (200, 201):
                    self.posted.setdefault(response.json()["case_id"], time.monotonic())
                    return
                assert response.status_code >= 500, response.text
            except httpx.TransportError:
                pass
            self.retries += 1
            await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))
        raise AssertionError(f"consultation {i} never accepted")

    async def drive(self, rate: float, seconds: float) -> None:
        async with httpx.AsyncClient(timeout=10, headers=bearer(Role.COUNTER),
                                     limits=httpx.Limits(max_connections=64)) as http:
            await steadily(rate, seconds, lambda i: self.consult(http, i))

    def delivered_cases(self) -> set[str]:
        return {r.event["subject"] for r in self.receiver.of_type(REQUESTED)}

    async def settle(self, limit_s: float = 240) -> None:
        """Until every accepted consultation's referral reached the partner (bounded)."""
        began = time.monotonic()
        while time.monotonic() - began < limit_s and not set(self.posted) <= self.delivered_cases():
            await asyncio.sleep(0.25)
        await asyncio.sleep(2)  # anything sent twice arrives meanwhile

    async def count(self, service: str, query: str, *args) -> int:
        conn = await asyncpg.connect(self.services[service].database_url)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    async def reconcile(self, fault: str, load: str) -> Report:
        report = Report(fault, load, consultations=len(self.posted), client_retries=self.retries)
        webhook_ids: dict[str, set[str]] = defaultdict(set)
        seen = 0
        for received in self.receiver.received:
            Webhook(self.partner["webhook_secret"]).verify(received.body, received.headers)
            webhook_ids[received.event["id"]].add(received.headers["webhook-id"])
            seen += 1
        report.events_checked = len(webhook_ids)
        report.resent_by_receiver = seen - len(webhook_ids)
        report.doubled = sum(len(ids) > 1 for ids in webhook_ids.values())
        first_arrival: dict[str, float] = {}
        loop_to_mono = time.monotonic() - asyncio.get_running_loop().time()
        for r in self.receiver.of_type(REQUESTED):
            first_arrival.setdefault(r.event["subject"], r.at + loop_to_mono)
        requested_per_case = defaultdict(set)
        for r in self.receiver.of_type(REQUESTED):
            requested_per_case[r.event["subject"]].add(r.event["data"]["referral_id"])
        report.doubled += sum(len(ids) > 1 for ids in requested_per_case.values())
        report.lost = len(set(self.posted) - set(first_arrival))
        latencies = [(first_arrival[c] - t) * 1000 for c, t in self.posted.items() if c in first_arrival]
        if len(latencies) > 1:
            q = statistics.quantiles(latencies, n=100, method="inclusive")
            report.latency_ms = {"p50": q[49], "p99": q[98], "max": max(latencies)}
        report.held = await self.count("partner-notification", "SELECT count(*) FROM held_events")
        for name in SERVICES:
            report.outbox_backlog += await self.count(name, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
        sheets = await self.count("referral", "SELECT count(*) FROM sheets WHERE case_id = ANY($1::uuid[])",
                                  list(self.posted))
        report.lost = max(report.lost, len(self.posted) - sheets)
        return report

    async def stop(self) -> None:
        for service in self.services.values():
            await service.stop()




@pytest.fixture
async def loop_on(tmp_path_factory):
    """`await loop_on(kafka_bootstrap, admin_dsn)`: a started loop on that infrastructure (its own
    topic namespace and databases), with a receiver server; everything removed afterwards."""
    made: list[tuple[Loop, ScratchDatabases, str, str, ReceiverServer]] = []

    async def make(kafka_bootstrap: str, admin_dsn: str, kafka_admin: KafkaCredentials | None = None, **env) -> Loop:
        """`kafka_admin`: the broker's super user (the session's infrastructure), None for a private
        PLAINTEXT cluster."""
        namespace = f"fault-{secrets.token_hex(3)}."
        await ensure_topics(kafka_bootstrap, namespace=namespace, credentials=kafka_admin)
        infra = Infrastructure(kafka_bootstrap, admin_dsn, "environment", kafka_admin)
        access = await open_namespace_access(infra, namespace)
        databases = ScratchDatabases(admin_dsn)
        server = await ReceiverServer().__aenter__()
        loop = Loop(kafka_bootstrap, databases, tmp_path_factory.mktemp("fault-logs"), namespace, access)
        made.append((loop, databases, infra, namespace, server))
        await loop.start(server, **env)
        return loop

    yield make
    for loop, databases, infra, namespace, server in made:
        await loop.stop()
        await server.__aexit__(None, None, None)
        try:
            await databases.drop_all()
            await asyncio.wait_for(close_namespace_access(infra, loop.access), 30)
            await asyncio.wait_for(delete_namespace(infra.kafka_bootstrap, namespace, credentials=infra.kafka_admin), 30)
        except Exception:  # noqa: BLE001 - a broker or database the test owned is already gone, with all in it
            pass
