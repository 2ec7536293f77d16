"""pytest fixtures: `infrastructure`, `scratch_database`, `service_process` (with its personal-data check), `jaeger`."""

from __future__ import annotations

import asyncio
import importlib
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack

import pytest
import pytest_asyncio

from tsunagu_teststack.databases import ScratchDatabases
from tsunagu_servicehost.migrations import upgrade
from tsunagu_teststack.infrastructure import Infrastructure, provide, stack_config
from tsunagu_teststack.pii import PersonalDataScanner, namespace_records, otlp_spans, report
from tsunagu_teststack.mailsink import MailSink
from tsunagu_teststack.receivers import Receiver, ReceiverServer
from tsunagu_teststack.kafka_access import NamespaceAccess, close_namespace_access, open_namespace_access
from tsunagu_teststack.traces import Jaeger
from tsunagu_teststack.services import ServiceProcess
from tsunagu_teststack.console import Browsing, ConsoleProcess, chromium_path
from tsunagu_teststack.tokens import bearer_token
from tsunagu_topics import ensure_topics
from tsunagu_topics.create import delete_namespace


@pytest.fixture(scope="session")
def infrastructure() -> Infrastructure:
    with ExitStack() as resources:
        infra = provide(resources)
        asyncio.run(ensure_topics(infra.kafka_bootstrap, credentials=infra.kafka_admin))
        yield infra


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def scratch_databases(infrastructure: Infrastructure) -> AsyncIterator[ScratchDatabases]:
    databases = ScratchDatabases(infrastructure.postgres_admin_dsn)
    yield databases
    await databases.drop_all()


@pytest_asyncio.fixture(loop_scope="session")
async def scratch_database(scratch_databases: ScratchDatabases) -> str:
    """URL of a new, empty database and the role that owns it."""
    return await scratch_databases.create()


@pytest_asyncio.fixture(loop_scope="session")
async def migrated_database(scratch_databases: ScratchDatabases) -> Callable[[str], Awaitable[str]]:
    """Factory: `await migrated_database("referral")` gives the URL of a new database carrying that
    service's migrations, for tests that call its handlers and adapters directly."""
    async def make(service: str) -> str:
        url = await scratch_databases.create(service)
        await migrate_in_process(service, url)
        return url
    return make


_ALEMBIC = threading.Lock()
"""Alembic's `context` in a migration environment is one module-level proxy per process: two
upgrades at once in one process would run in each other's environment."""


async def migrate_in_process(service: str, database_url: str) -> None:
    """The service's migrations, applied as its `migrate` command applies them, in the test process.

    A `migrate` subprocess spends about two seconds importing the service before a migration that
    takes tenths; test_migrations.py runs each service's `migrate` command itself."""
    def upgrade_under_lock() -> None:
        built = importlib.import_module(f"{stack_config()['services'][service]['module']}.bootstrap").build_service()
        with _ALEMBIC:
            upgrade(built, database_url)

    await asyncio.to_thread(upgrade_under_lock)


NAMESPACES: dict[str, NamespaceAccess] = {}
"""Each open test namespace's Kafka users, by namespace."""


@pytest_asyncio.fixture(loop_scope="session")
async def kafka_namespace(infrastructure: Infrastructure) -> AsyncIterator[str]:
    """A fresh set of the registry's topics for one test, with the four services' Kafka users and
    their registry-derived ACLs in that namespace; all removed afterwards."""
    namespace = f"test-{secrets.token_hex(4)}."
    await ensure_topics(infrastructure.kafka_bootstrap, namespace=namespace, credentials=infrastructure.kafka_admin)
    NAMESPACES[namespace] = await open_namespace_access(infrastructure, namespace)
    yield namespace
    await close_namespace_access(infrastructure, NAMESPACES.pop(namespace))
    await delete_namespace(infrastructure.kafka_bootstrap, namespace, credentials=infrastructure.kafka_admin)


@pytest.fixture
def namespace_access(kafka_namespace: str) -> NamespaceAccess:
    """The Kafka credentials of each service in this test's namespace."""
    return NAMESPACES[kafka_namespace]


@pytest_asyncio.fixture(loop_scope="session")
async def service_process(infrastructure: Infrastructure, scratch_databases: ScratchDatabases, kafka_namespace: str,
                          tmp_path_factory) -> AsyncIterator[Callable[..., Awaitable[ServiceProcess]]]:
    """Factory: `await service_process("intake")` gives a migrated, running service on its own database;
    `await service_process("console", urls={"intake": intake.url, ...})` the web console.

    When the test ends, after the services stopped, every record on the test's topics, every log line
    the services wrote and every span they exported (to a collector of the test's own, unless the
    test gives TSUNAGU_OTLP_ENDPOINT) is searched for the sample people's personal data
    (tsunagu_teststack.pii); a hit fails the test and says where."""
    started: list[ServiceProcess] = []
    log_dir = tmp_path_factory.mktemp("service-logs")
    spans = Receiver()

    async def start(service: str, *, database_url: str | None = None, migrate: bool = True,
                    extra_env: dict[str, str] | None = None, urls: dict[str, str] | None = None) -> ServiceProcess:
        """`urls`: for the console only, the public APIs it calls (intake, referral, housing, partners)."""
        telemetry = {"TSUNAGU_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}", "OTEL_BSP_SCHEDULE_DELAY": "200"}
        if service == "console":
            console = ConsoleProcess(urls=urls or {}, log_dir=log_dir, extra_env={**telemetry, **(extra_env or {})})
            started.append(console)
            await console.start()
            return console
        url = database_url or await scratch_databases.create(service)
        process = ServiceProcess(service, kafka_bootstrap=infrastructure.kafka_bootstrap, database_url=url,
                                 log_dir=log_dir, kafka_credentials=NAMESPACES[kafka_namespace].credentials(service),
                                 extra_env={"TSUNAGU_TOPIC_NAMESPACE": kafka_namespace, **telemetry, **(extra_env or {})})
        if migrate:
            await migrate_in_process(service, url)
        started.append(process)
        await process.start()
        return process

    async with ReceiverServer() as collector:
        collector.add("v1/traces", spans)
        yield start
        for process in started:
            await process.stop()  # a stopping service flushes its spans and logs
    scanner = PersonalDataScanner()
    hits = [hit for process in started for hit in scanner.scan_log(process.log_path)]
    hits += scanner.scan_spans(otlp_spans(r.body for r in spans.received))
    records = await namespace_records(infrastructure.kafka_bootstrap, kafka_namespace,
                                      options=infrastructure.kafka_options)
    hits += [hit for record in records for hit in scanner.scan_record(record)]
    assert not hits, report(hits)


@pytest.fixture(scope="session")
def token() -> Callable[..., str]:
    """`token("counter")`: a bearer token for a role, signed as the services under test expect
    (tokens.py: staff from the session's identity provider, partners' sessions and services' calls
    from their services' keys)."""
    return bearer_token


@pytest.fixture(scope="session")
def auth_headers(token) -> Callable[..., dict[str, str]]:
    return lambda role, **kw: {"Authorization": f"Bearer {token(role, **kw)}"}


@pytest_asyncio.fixture(loop_scope="session")
async def mail_sink() -> AsyncIterator[MailSink]:
    """An SMTP sink on a free loopback port (mailsink.py): `.mails`, `.to(address)`, `.refuse(451)`;
    `.partner_env()` points partner-notification at it."""
    async with MailSink() as sink:
        yield sink


@pytest.fixture(scope="session")
def jaeger() -> Iterator[Jaeger]:
    """A Jaeger of the session's own on free loopback ports, from the cached build (built first
    when missing: minutes, see deploy/jaegerctl.py); removed afterwards."""
    instance = Jaeger.start()
    try:
        yield instance
    finally:
        instance.remove()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium():
    """Debian's Chromium, driven by Playwright (its own browser download is not used)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield browser
        await browser.close()


@pytest.fixture(scope="session")
def browsing() -> Browsing:
    """`await browsing.check(page, "counter-case")`: axe-core on the page, and a screenshot kept."""
    return Browsing()


@pytest_asyncio.fixture(loop_scope="session")
async def new_page(chromium):
    """Factory: `await new_page()` is a page in a browser context of its own (its own cookies: one
    person signed in), in Japanese and Japan time."""
    contexts = []

    async def open_page():
        context = await chromium.new_context(locale="ja-JP", timezone_id="Asia/Tokyo",
                                             viewport={"width": 1280, "height": 900})
        contexts.append(context)
        return await context.new_page()

    yield open_page
    for context in contexts:
        await context.close()
