"""Services as real processes for a benchmark: on the test infrastructure, in a topic namespace
and scratch databases of their own, removed afterwards."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path

from tsunagu_teststack.databases import ScratchDatabases
from tsunagu_teststack.infrastructure import Infrastructure, provide
from tsunagu_teststack.services import ServiceProcess
from tsunagu_teststack.kafka_access import close_namespace_access, open_namespace_access
from tsunagu_topics import ensure_topics
from tsunagu_topics.create import delete_namespace


@asynccontextmanager
async def running(*names: str, env: dict[str, dict[str, str]] | None = None, settle_s: float = 3.0,
                  before_start: Callable[[Infrastructure, str], Awaitable[None]] | None = None,
                  ) -> AsyncIterator[dict[str, ServiceProcess]]:
    """Start the named services in order (migrated, serving) and give them by name; `env` adds
    settings per service. Waits `settle_s` so their consumers have joined their groups.
    `before_start(infrastructure, namespace)` runs once the namespace's topics exist and before any
    service starts: a backlog written there is waiting for the services."""
    with ExitStack() as resources:
        infra = provide(resources)
        namespace = f"bench-{secrets.token_hex(3)}."
        await ensure_topics(infra.kafka_bootstrap, namespace=namespace, credentials=infra.kafka_admin)
        access = await open_namespace_access(infra, namespace)
        databases = ScratchDatabases(infra.postgres_admin_dsn)
        logs = Path(tempfile.mkdtemp(prefix="tsunagu-bench-"))
        started: dict[str, ServiceProcess] = {}
        try:
            if before_start is not None:
                await before_start(infra, namespace)
            for name in names:
                wiring = {"TSUNAGU_TOPIC_NAMESPACE": namespace}
                if name == "partner-notification" and "intake" in started:  # as `make run` wires them
                    wiring["TSUNAGU_PARTNERS_INTAKE_URL"] = started["intake"].internal_url
                service = ServiceProcess(name, kafka_bootstrap=infra.kafka_bootstrap,
                                         database_url=await databases.create(name), log_dir=logs,
                                         extra_env={**wiring, **(env or {}).get(name, {})},
                                         kafka_credentials=access.credentials(name))
                await service.migrate()
                await service.start()
                started[name] = service
            await asyncio.sleep(settle_s)
            print(f"service logs: {logs}")
            yield started
        finally:
            for service in started.values():
                await service.stop()
            await databases.drop_all()
            await close_namespace_access(infra, access)
            await delete_namespace(infra.kafka_bootstrap, namespace, credentials=infra.kafka_admin)


async def steadily(rate: float, seconds: float, send) -> None:
    """Open loop: start `send(i)` every 1/rate s for `seconds`, whatever the answers take; then wait for all."""
    loop = asyncio.get_running_loop()
    started, tasks = loop.time(), []
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, started + i / rate - loop.time()))
        tasks.append(asyncio.create_task(send(i)))
    await asyncio.gather(*tasks)
