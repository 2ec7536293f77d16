"""One record the broker will not take does not stop a service's outbox: it is parked, the other
cases keep flowing, its own case waits behind it on that topic, and it goes out once released.

partner-notification runs as a real process; rows are written into its outbox as its handlers
write them: one for a partner topic that does not exist yet, one too large for the broker.
"""

import asyncio
import sys
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from tsunagu_contracts import PARTNER_RESPONSES, PartnerDeliveries, PartnerResponded, decode, uuid7
from tsunagu_outbox import append
from tsunagu_teststack.waiting import eventually
from tsunagu_topics import ensure_topics

pytestmark = pytest.mark.stack
ATTEMPTS = 3
FAST_OUTBOX = {"TSUNAGU_OUTBOX_MAX_ATTEMPTS": str(ATTEMPTS), "TSUNAGU_OUTBOX_FIRST_RETRY_S": "0.2",
               "TSUNAGU_OUTBOX_PUBLISH_TIMEOUT_S": "1"}


def an_answer(case_id: uuid.UUID) -> PartnerResponded:
    example = PartnerResponded.model_json_schema()["examples"][0]
    return PartnerResponded.model_validate({**example, "case_id": str(case_id), "response_id": str(uuid7()),
                                            "occurred_at": datetime.now(UTC).isoformat()})


async def rows(service, sql: str, *args) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(service.database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def metrics(service) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        text = (await client.get("/metrics")).text
    return {line.split(" ")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("tsunagu_outbox_")}


async def test_records_the_broker_refuses_are_parked_and_the_others_are_published(
        service_process, kafka_namespace, infrastructure):
    partners = await service_process("partner-notification", extra_env=FAST_OUTBOX)
    stuck_case, other_case = uuid7(), uuid7()
    missing = PartnerDeliveries.for_partner(uuid7())  # its partner topic was never created
    poison, behind, same_case_elsewhere, other = (an_answer(stuck_case), an_answer(stuck_case),
                                                   an_answer(stuck_case), an_answer(other_case))
    oversized = an_answer(uuid7())
    conn = await asyncpg.connect(partners.database_url)
    try:
        async with conn.transaction():
            await append(conn, poison, topic=missing.name)
            await append(conn, behind, topic=missing.name)
            await append(conn, oversized)
            await conn.execute("UPDATE outbox SET value = $1 WHERE headers->>'ce_type' = $2 AND record_key = $3",
                               b"x" * 2_000_000, oversized.type, str(oversized.case_id))
            await append(conn, same_case_elsewhere)
            await append(conn, other)
    finally:
        await conn.close()

    published = await infrastructure.read_records(kafka_namespace + PARTNER_RESPONSES.name, 2)
    assert sorted(decode(r.headers, r.value).data.response_id for r in published) == sorted(
        [same_case_elsewhere.response_id, other.response_id]), "other cases, and the same case on another topic"

    state = ("SELECT event_id, attempts, parked_at IS NOT NULL AS parked, published_at IS NOT NULL AS published, "
             "last_error FROM outbox WHERE topic = $1 ORDER BY id")
    parked = await eventually(lambda: rows(partners, state, missing.name), until=lambda rs: rs[0]["parked"])
    assert parked[0]["attempts"] == ATTEMPTS and not parked[0]["published"]
    assert parked[1]["attempts"] == 0 and not parked[1]["published"], "the same case waits behind it, in order"
    too_large = await eventually(lambda: rows(partners, state, PARTNER_RESPONSES.name),
                                 until=lambda rs: any(r["parked"] for r in rs))
    assert [r["last_error"].split(":")[0] for r in too_large if r["parked"]] == ["MessageSizeTooLargeError"]
    seen = await eventually(lambda: metrics(partners), until=lambda m: m.get("tsunagu_outbox_parked") == 2)
    assert seen["tsunagu_outbox_held_behind_parked"] == 1
    assert seen["tsunagu_outbox_backlog"] == 0
    assert "tsunagu_outbox_oldest_unpublished_age_seconds" in seen
    assert str(poison.response_id) not in partners.log(), "never the value in the log"
    assert "parked" in partners.log()

    # The cause is fixed (the topic exists now), and an operator releases what was parked.
    await ensure_topics(infrastructure.kafka_bootstrap, [missing], namespace=kafka_namespace,
                        credentials=infrastructure.kafka_admin)
    release = await asyncio.create_subprocess_exec(
        sys.executable, "-m", partners.module, "replay-outbox", "--event-id", str(parked[0]["event_id"]),
        env=partners.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await release.communicate()
    assert release.returncode == 0, output.decode()
    assert "1 parked outbox row(s) released" in output.decode()

    delivered = await infrastructure.read_records(kafka_namespace + missing.name, 2)
    assert [decode(r.headers, r.value).data.response_id for r in delivered] == [poison.response_id,
                                                                                behind.response_id]
    after = await eventually(lambda: metrics(partners), until=lambda m: m.get("tsunagu_outbox_parked") == 1)
    assert after["tsunagu_outbox_held_behind_parked"] == 0 and after["tsunagu_outbox_backlog"] == 0, \
        "only the oversized record is left parked"
