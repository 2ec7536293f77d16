"""Builds a service's ASGI application: Kafka broker, PostgreSQL pool, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
import uvicorn
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.security import SASLScram512
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter

from tsunagu_outbox import OutboxMetrics, OutboxRelay, RelayPolicy
from tsunagu_servicehost.auth import ServiceSigner, TokenVerifier
from tsunagu_servicehost.consumer import OffsetCommitter
from tsunagu_servicehost.deadletters import DeadLetterWriter, replay_group
from tsunagu_servicehost.errors import ERROR_ANSWERS, document_error_answers, install_error_handlers
from tsunagu_servicehost.health import health_router
from tsunagu_servicehost.lag import KafkaOffsets
from tsunagu_servicehost.limits import BodySizeLimit
from tsunagu_servicehost.metrics import HttpMetrics, ScrapeTimeFigures
from tsunagu_servicehost.publishing import OutboxPublisher, topic_exists
from tsunagu_servicehost.tracing import install_request_tracing
from tsunagu_servicehost.service import Service
from tsunagu_servicehost.settings import ServiceSettings
from tsunagu_contracts import dead_letter_topic
from tsunagu_telemetry import tracer_provider

log = logging.getLogger("tsunagu.servicehost")


@dataclass
class Runtime:
    """The live clients of one service process, handed to its subscribers and routes."""

    service: Service
    settings: ServiceSettings
    broker: KafkaBroker
    registry: CollectorRegistry
    tracer_provider: TracerProvider
    tokens: TokenVerifier
    """Checks the bearer tokens of requests to this service."""
    signer: ServiceSigner
    """Signs this service's tokens for the services it calls."""
    pool: asyncpg.Pool | None = None
    relay: OutboxRelay | None = None
    consumed: Counter | None = None
    """Events consumed, by consumer (the service), topic and outcome: applied, duplicate (already
    applied), skipped, dead_lettered."""
    dead_letters: DeadLetterWriter | None = None
    paused_consumers: dict[str, str] = field(default_factory=dict)
    """Topic → why its consumer is paused (the database cannot apply records); /readyz reports them."""
    consumed_topics: list[str] = field(default_factory=list)
    """The topics the service's consumer group reads (on this deployment's broker), for its lag."""
    offsets: KafkaOffsets | None = None
    figures: ScrapeTimeFigures | None = None
    """What /metrics reads from the database and the broker before it answers."""
    offset_committers: list[OffsetCommitter] = field(default_factory=list)
    """The subscribers' offset commits, the last of which is made when the service stops."""

    def topic(self, name: str) -> str:
        """The name a registry topic has on this deployment's broker."""
        return self.settings.topic_namespace + name

    async def stop_consuming(self) -> None:
        """Stop the subscribers and commit the offsets of what they applied; `broker.stop` closes them."""
        await self.broker.stop_consuming()
        await asyncio.gather(*(committer.close() for committer in self.offset_committers))

    @property
    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the database pool is opened when the application starts")
        return self.pool


WARM_CONNECTIONS = 6
"""Pooled connections opened as the service starts, before any request needs them."""


async def open_connections(pool: asyncpg.Pool, n: int, wait_s: float = 1.0) -> None:
    """Open up to `n` of the pool's connections at once (half the pool at most) and give them back. A
    new connection costs a SCRAM sign-in and asyncpg's type introspection (milliseconds of CPU on
    both sides): paid at start, not by the first burst of requests. None is waited for longer than
    `wait_s`, so what the pool cannot give at once (connections the relay and the sender keep) is
    not waited for while others are held; a database that does not answer yet is left to the pool
    (and to /readyz)."""
    held = await asyncio.gather(*(pool.acquire(timeout=wait_s) for _ in range(min(n, pool.get_max_size() // 2))),
                                return_exceptions=True)
    for conn in held:
        if not isinstance(conn, BaseException):
            await pool.release(conn)


def settle_garbage_collection() -> None:
    """For a process about to serve (or to run a long batch): what it built so far (modules, models,
    routes) lives as long as the process, so it is moved out of the collector's sight (`gc.freeze`),
    and the youngest generation is collected after 20,000 allocations instead of 700. Otherwise every
    full collection walks those objects again: pauses of milliseconds under load, in the latency of
    whatever waits. Process-wide: called by `serve` and `rebuild-reports`, never by a library."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


async def without_session_state(conn: asyncpg.Connection) -> None:
    """How a pooled connection is made clean when it is given back: asyncpg has already rolled back
    any open transaction and dropped its listeners' callbacks; nothing is sent to the server.

    asyncpg's default reset sends one more statement (unlock all advisory locks, close cursors,
    UNLISTEN, RESET ALL) at every release: a round trip for every unit of work. The services keep no
    session state on pooled connections: advisory locks are transaction-scoped
    (`pg_advisory_xact_lock`), nothing is SET for the session and no cursor outlives its
    transaction. The two that do LISTEN or hold a session lock (the outbox relay and the partners'
    sender) reset their connection themselves before they give it back."""


def credentials_given(settings: ServiceSettings) -> bool:
    """Built offline (openapi, handler tests) a service may lack Kafka credentials; `serve` refuses that."""
    return settings.kafka_credentials_missing is None


class ServiceBroker(KafkaBroker):
    """FastStream's Kafka broker, whose subscribers start together instead of one after another.

    Starting a consumer waits until its group has assigned it partitions, and a service's consumers
    share one group: each consumer that joins after the others makes them all rejoin on their next
    heartbeat, so starting them one by one costs about a rebalance (1-1.5 s) per consumer. Started
    together they join in one or two rebalances. `start` still returns only once every consumer has
    its partitions, as FastStream's own does; the first failure cancels the others and is raised.
    """

    async def start(self) -> None:
        await self.connect()
        starting = [asyncio.create_task(subscriber.start()) for subscriber in self.subscribers]
        try:
            await asyncio.gather(*starting)
        except BaseException:
            for task in starting:
                task.cancel()
            await asyncio.gather(*starting, return_exceptions=True)
            raise
        for publisher in self.publishers:
            await publisher.start()
        self.running = True

    async def stop_consuming(self) -> None:
        """Stop every subscriber's consuming task and leave its Kafka consumer open, so that the offsets of
        the records it applied can still be committed; `stop` closes the consumers. A record in hand
        is cancelled: its transaction rolls back, or it is applied and comes back as a duplicate."""
        tasks = []
        for subscriber in self.subscribers:
            subscriber.running = False
            tasks += subscriber.tasks
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def build_broker(name: str, settings: ServiceSettings, registry: CollectorRegistry,
                 provider: TracerProvider) -> ServiceBroker:
    """The service's Kafka broker: its own SCRAM user, idempotent producer, W3C trace context and
    Prometheus metrics."""
    credentials = settings.kafka_credentials if credentials_given(settings) else None
    return ServiceBroker(
        settings.kafka_bootstrap,
        client_id=f"tsunagu-{name}",
        security=SASLScram512(credentials.username, credentials.password, use_ssl=False) if credentials else None,
        # Idempotent producer: acks=all and no duplicates from producer retries.
        enable_idempotence=True,
        allow_auto_create_topics=False,
        middlewares=(
            KafkaTelemetryMiddleware(tracer_provider=provider),
            KafkaPrometheusMiddleware(registry=registry, app_name=name),
        ),
        logger=logging.getLogger(f"tsunagu.{name}.kafka"),
        # FastStream's "Received"/"Processed" lines per record, at DEBUG: two JSON lines per event
        # and service (about 3% of a consumer's CPU); failures are still logged at ERROR, and each
        # record is in its trace.
        log_level=logging.DEBUG,
    )


def build_app(service: Service, settings: ServiceSettings) -> FastAPI:
    """The service as an ASGI app; no client connects before the app starts."""
    registry = CollectorRegistry()
    provider = tracer_provider(service.name, settings.otlp_endpoint)
    runtime = Runtime(service, settings, build_broker(service.name, settings, registry, provider), registry, provider,
                      TokenVerifier(service.name, settings),
                      ServiceSigner(service.name, settings.service_signing_key.get_secret_value()))
    runtime.consumed = Counter("tsunagu_consumed_events", "Events consumed, by consumer, topic and outcome",
                               ["consumer", "topic", "outcome"], registry=registry)
    kafka_options = settings.kafka_options if credentials_given(settings) else {}
    runtime.dead_letters = DeadLetterWriter(settings.kafka_bootstrap, client_id=f"tsunagu-{service.name}-dlq",
                                            options=kafka_options)
    outbox_metrics = OutboxMetrics(registry)
    publisher = OutboxPublisher(settings.kafka_bootstrap, f"tsunagu-{service.name}-outbox",
                                provider.get_tracer(f"tsunagu.{service.name}.outbox"), kafka_options)
    runtime.offsets = KafkaOffsets(
        registry, settings.kafka_bootstrap, f"tsunagu-{service.name}-offsets",
        group=runtime.topic(f"tsunagu-{service.name}"), topics=runtime.consumed_topics,
        dead_letter_topic=runtime.topic(dead_letter_topic(service.name).name),
        dead_letter_group=replay_group(settings.topic_namespace, service.name),
        options=kafka_options)
    runtime.figures = ScrapeTimeFigures(registry, service.gauges)
    if service.subscribe:
        service.subscribe(runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # min_size=0: the service starts even while its database is down; /readyz says so.
        runtime.pool = await asyncpg.create_pool(
            settings.database_url.get_secret_value(), min_size=0, max_size=settings.database_pool_size,
            timeout=settings.readiness_timeout_s, command_timeout=30, reset=without_session_state,
            # Kept an hour when idle rather than asyncpg's five minutes: a quiet spell does not make the
            # next burst open connections again.
            max_inactive_connection_lifetime=3600)
        await runtime.dead_letters.start()
        await runtime.broker.start()
        await publisher.start()
        runtime.relay = OutboxRelay(
            runtime.pool, lambda topic, records: publisher.publish(runtime.topic(topic), records),
            policy=RelayPolicy(max_attempts=settings.outbox_max_attempts, first_retry_s=settings.outbox_first_retry_s,
                               max_retry_s=settings.outbox_max_retry_s, parked_retry_s=settings.outbox_parked_retry_s,
                               publish_timeout_s=settings.outbox_publish_timeout_s),
            metrics=outbox_metrics, broker_up=lambda: runtime.broker.ping(timeout=settings.readiness_timeout_s),
            topic_exists=lambda topic: topic_exists(runtime.broker, runtime.topic(topic)))
        tasks = [asyncio.create_task(runtime.relay.run(), name=f"{service.name}:outbox-relay"),
                 asyncio.create_task(open_connections(runtime.pool, WARM_CONNECTIONS), name=f"{service.name}:warm-pool")]
        tasks += [asyncio.create_task(start(runtime), name=f"{service.name}:{start.__name__}")
                  for start in service.on_start]
        internal = None
        try:
            # Inside `try`: a port that is taken stops what started above before the error ends the process.
            internal = await _serve_internal(internal_app, settings) if internal_app is not None else None
            log.info("%s started", service.name)
            yield
        finally:
            if internal is not None:
                await internal.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runtime.offsets.stop()
            await runtime.stop_consuming()
            await runtime.broker.stop()
            await publisher.stop()  # after the relay, stopped with the tasks above
            await runtime.dead_letters.stop()  # after the consumers, which may be writing one
            await runtime.pool.close()
            provider.shutdown()
            log.info("%s stopped", service.name)

    internal_app = None
    if service.internal_http and settings.internal_port:
        internal_app = FastAPI(title=f"{service.title} (internal)", version=service.version)
        internal_app.state.runtime = runtime
        install_error_handlers(internal_app)
        internal_app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_request_body_bytes)
        install_request_tracing(internal_app, provider, service.name)
        for router in service.internal_http(runtime):
            internal_app.include_router(router, responses=ERROR_ANSWERS)

    app = FastAPI(title=service.title, version=service.version, lifespan=lifespan)
    app.state.internal_app = internal_app
    app.state.runtime = runtime
    install_error_handlers(app)
    # Innermost of the middlewares: tracing and metrics see the 413 it answers like any other.
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_request_body_bytes)
    install_request_tracing(app, provider, service.name)
    app.add_middleware(HttpMetrics, registry=registry)
    app.include_router(health_router(runtime), responses={413: ERROR_ANSWERS[413]})
    for router in service.http(runtime) if service.http else ():
        app.include_router(document_error_answers(router), responses=ERROR_ANSWERS)
    return app


class _InternalServer(uvicorn.Server):
    """The internal listener, run inside the public application's lifespan: the public server owns
    the process's signals and stops it before the pool and broker close."""

    def capture_signals(self):
        return contextlib.nullcontext()


@dataclass
class _RunningServer:
    server: _InternalServer
    task: asyncio.Task

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.gather(self.task, return_exceptions=True)


async def _serve_internal(app: FastAPI, settings: ServiceSettings) -> _RunningServer:
    """Serve the internal API on its own loopback port; return once it listens. The socket is bound
    here, so a port that is taken raises OSError at once (uvicorn would exit the process instead)."""
    sock = socket.create_server((settings.internal_host, settings.internal_port))
    server = _InternalServer(uvicorn.Config(app, host=settings.internal_host, port=settings.internal_port,
                                            log_config=None, access_log=False, lifespan="off", http="httptools"))
    task = asyncio.create_task(server.serve(sockets=[sock]), name="internal-http")
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"the internal API could not listen on {settings.internal_host}:{settings.internal_port}")
        await asyncio.sleep(0.02)
    log.info("internal API on %s:%s", settings.internal_host, settings.internal_port)
    return _RunningServer(server, task)
