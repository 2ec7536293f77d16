"""Every service runs as a real process against the real Kafka broker and PostgreSQL."""

import asyncio

import httpx
import pytest

from tsunagu_teststack.infrastructure import stack_config
from tsunagu_teststack.services import free_port

SERVICES = list(stack_config()["services"])


@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_is_ready_and_serves_health_metrics_and_openapi(service, service_process):
    running = await service_process(service)
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
        readiness = await _eventually_ready(client)
        health = await client.get("/healthz")
        metrics = await client.get("/metrics")
        openapi = await client.get("/openapi.json")

    assert readiness.status_code == 200, readiness.text
    assert readiness.json() == {"status": "ready", "checks": {"kafka": "ok", "database": "ok", "consumers": "ok"}}
    assert health.json() == {"status": "ok", "service": service}
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "faststream_published_messages_total" in metrics.text
    paths = openapi.json()["paths"]
    assert {"/healthz", "/readyz", "/metrics"} <= set(paths)

async def test_a_service_whose_database_is_unreachable_is_not_ready_and_says_why(service_process):
    unreachable = "postgresql://nobody:secret-password@127.0.0.1:1/nothing"
    running = await service_process("referral", database_url=unreachable, migrate=False)
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
        readiness = await client.get("/readyz")
        health = await client.get("/healthz")

    assert readiness.status_code == 503
    body = readiness.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["kafka"] == "ok"
    assert body["checks"]["database"].startswith("unreachable: ")
    assert "secret-password" not in readiness.text
    assert health.status_code == 200, "the process itself is alive; only readiness fails"

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
        service_process, infrastructure):
    # The real broker, and a loopback port where nothing listens, written as people write lists.
    servers = f"{infrastructure.kafka_bootstrap}, 127.0.0.1:{free_port()}"
    running = await service_process("housing-support", extra_env={"TSUNAGU_KAFKA_BOOTSTRAP": servers})
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
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
