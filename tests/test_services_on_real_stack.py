"""Every service runs as a real process against the real Kafka broker and PostgreSQL."""

import asyncio

import asyncpg
import httpx
import pytest

from tsunagu_teststack.infrastructure import stack_config
from tsunagu_teststack.services import free_port

SERVICES = list(stack_config()["services"])


@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_is_ready_and_serves_health_metrics_and_openapi(service, service_process, auth_headers):
    running = await service_process(service)
    async with httpx.AsyncClient(base_url=running.url, timeout=10, headers=auth_headers("ops")) as client:
        readiness = await _eventually_ready(client)
        health = await client.get("/healthz")
        metrics = await client.get("/metrics")
        openapi = await client.get("/openapi.json")

    assert readiness.status_code == 200, readiness.text
    assert readiness.json() == {"status": "ready", "checks": {"kafka": "ok", "database": "ok", "consumers": "ok"}}
    assert health.json() == {"status": "ok", "service": service}
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "faststream_received_messages_total" in metrics.text, "the consumers' metrics"
    assert "tsunagu_outbox_published_total" in metrics.text, "the outbox relay's"
    paths = openapi.json()["paths"]
    assert {"/healthz", "/readyz", "/metrics"} <= set(paths)

async def test_a_service_whose_database_is_unreachable_is_not_ready_and_says_why_to_ops(service_process,
                                                                                          auth_headers):
    unreachable = "postgresql://nobody:secret-password@127.0.0.1:1/nothing"
    running = await service_process("referral", database_url=unreachable, migrate=False)
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
        readiness = await client.get("/readyz", headers=auth_headers("ops"))
        health = await client.get("/healthz")

    assert readiness.status_code == 503
    body = readiness.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["kafka"] == "ok"
    assert body["checks"]["database"].startswith("unreachable: ")
    assert "secret-password" not in readiness.text
    assert health.status_code == 200, "the process itself is alive; only readiness fails"

@pytest.mark.parametrize("who", ["no token", "invalid token", "counter", "coordinator", "partner"])
async def test_anyone_but_ops_gets_only_the_status_code_and_a_bare_body_from_readyz(who, service_process,
                                                                                     auth_headers):
    unreachable = "postgresql://nobody:secret-password@127.0.0.1:1/nothing"
    running = await service_process("referral", database_url=unreachable, migrate=False)
    headers = {"no token": {}, "invalid token": {"Authorization": "Bearer not-a-token"}}.get(who)
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
        readiness = await client.get("/readyz", headers=auth_headers(who) if headers is None else headers)

    assert readiness.status_code == 503
    assert readiness.json() == {"status": "unavailable"}
    assert "127.0.0.1" not in readiness.text and "unreachable" not in readiness.text


async def test_a_body_over_the_limit_is_answered_413_by_a_running_service_and_stores_nothing(
        service_process, auth_headers, consultation):
    running = await service_process("intake", extra_env={"TSUNAGU_MAX_REQUEST_BODY_BYTES": "65536"})
    too_long = consultation(notes="あ" * 30_000)  # 90 000 bytes of UTF-8, within notes' own length limit
    body = httpx.Request("POST", "/", json=too_long).content

    async def chunked():
        for start in range(0, len(body), 4096):
            yield body[start:start + 4096]

    async with httpx.AsyncClient(base_url=running.url, timeout=10, headers=auth_headers("counter")) as client:
        declared = await client.post("/v1/consultations", content=body,
                                     headers={"content-type": "application/json", "Idempotency-Key": "k-1"})
        streamed = await client.post("/v1/consultations", content=chunked(),
                                     headers={"content-type": "application/json", "Idempotency-Key": "k-2"})

    assert declared.status_code == streamed.status_code == 413, (declared.text, streamed.text)
    assert "transfer-encoding" not in declared.request.headers and "content-length" not in streamed.request.headers
    assert list(streamed.json()) == ["message_ja", "message_en"] and "大きすぎます" in streamed.json()["message_ja"]
    conn = await asyncpg.connect(running.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM consultations") == 0
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await conn.close()


async def test_a_write_while_the_database_is_unreachable_is_answered_503_with_retry_after_and_why(
        service_process, auth_headers, consultation):
    nothing_listens = f"postgresql://nobody:secret-password@127.0.0.1:{free_port()}/nothing"
    running = await service_process("intake", database_url=nothing_listens, migrate=False)
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
        response = await client.post("/v1/consultations", json=consultation(), headers=auth_headers("counter"))

    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert "一時的に利用できません" in body["message_ja"] and "何も保存されていません" in body["message_ja"]
    assert "temporarily unavailable" in body["message_en"] and "nothing was stored" in body["message_en"]
    assert "secret-password" not in response.text


async def test_a_service_given_several_bootstrap_servers_is_ready_while_one_of_them_is_down(
        service_process, infrastructure, auth_headers):
    # The real broker, and a loopback port where nothing listens, written as people write lists.
    servers = f"{infrastructure.kafka_bootstrap}, 127.0.0.1:{free_port()}"
    running = await service_process("housing-support", extra_env={"TSUNAGU_KAFKA_BOOTSTRAP": servers})
    async with httpx.AsyncClient(base_url=running.url, timeout=10, headers=auth_headers("ops")) as client:
        readiness = await _eventually_ready(client)

    assert readiness.status_code == 200, readiness.text
    assert readiness.json()["checks"]["kafka"] == "ok"


async def _eventually_ready(client: httpx.AsyncClient) -> httpx.Response:
    # The broker connects in the background of start-up; give it a bounded number of tries.
    for _ in range(50):
        response = await client.get("/readyz")
        if response.status_code == 200:
            return response
        await asyncio.sleep(0.2)
    return response
