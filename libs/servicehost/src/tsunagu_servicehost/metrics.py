"""What `/metrics` says beyond FastStream's own counters: HTTP requests by route template, and
figures read when Prometheus scrapes (consumer lag and dead letters from Kafka, a service's own
gauges from its database).

Figures that live in the database or the broker are read at scrape time rather than counted in
every code path that changes them: the count is then right after a restart, in every instance, and
whichever path made the change. A read that fails or takes longer than the readiness timeout
leaves the previous values in place (/readyz says what is down).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tsunagu_servicehost.health import readiness

if TYPE_CHECKING:
    from tsunagu_servicehost.app import Runtime

log = logging.getLogger("tsunagu.servicehost.metrics")

OPERATIONS_PATHS = {"/healthz", "/readyz", "/metrics"}
"""Probed every few seconds by supervisors and Prometheus: counting them would drown the API's figures."""

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class HttpMetrics:
    """ASGI middleware: requests and their duration by method, route template and status.

    The label is the route's template (`/v1/cases/{case_id}`), never the path itself: a path holds
    ids, and one series per case would swamp Prometheus. A request no route matched is `unmatched`.
    """

    def __init__(self, app, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter("tsunagu_http_requests", "HTTP requests answered, by method, route template and "
                                "status (5xx: the service's errors)", ["method", "route", "status"], registry=registry)
        self.duration = Histogram("tsunagu_http_request_duration_seconds", "Time to answer an HTTP request, by "
                                  "method and route template", ["method", "route"], buckets=HTTP_BUCKETS,
                                  registry=registry)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPERATIONS_PATHS:
            await self.app(scope, receive, send)
            return
        status = 500  # an exception that escapes every handler is answered 500 further out
        started = time.perf_counter()

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(scope["method"], route, str(status)).inc()
            self.duration.labels(scope["method"], route).observe(time.perf_counter() - started)


@dataclass(frozen=True)
class DatabaseGauge:
    """A gauge a service reads from its own database when `/metrics` is scraped.

    `query` returns one row per label set: a column per label, then `value`. Label sets absent
    from the latest answer are dropped, so a partner re-enabled or a check-in followed up leaves no
    stale series behind.
    """

    name: str
    documentation: str
    query: str
    labels: tuple[str, ...] = ()


class ScrapeTimeFigures:
    """Reads the database gauges and the Kafka offsets, at most once per `min_interval_s`."""

    def __init__(self, registry: CollectorRegistry, gauges: Sequence[DatabaseGauge], min_interval_s: float = 1.0):
        self.specs = list(gauges)
        self.gauges = {spec.name: Gauge(spec.name, spec.documentation, list(spec.labels), registry=registry)
                       for spec in self.specs}
        self.ready = Gauge("tsunagu_readiness_check_ok", "1 while the service can use the dependency, 0 when "
                           "not (/readyz says why)", ["check"], registry=registry)
        self.min_interval_s = min_interval_s
        self._lock = asyncio.Lock()
        self._read_at = float("-inf")

    async def refresh(self, runtime: "Runtime") -> None:
        async with self._lock:  # scrapes that arrive together share one read
            if time.monotonic() - self._read_at < self.min_interval_s:
                return
            timeout = runtime.settings.readiness_timeout_s
            jobs = [self._read_readiness(runtime)]
            if self.specs and runtime.pool is not None:
                jobs.append(self._read_database(runtime.db, timeout))
            if runtime.offsets is not None:
                jobs.append(runtime.offsets.refresh(timeout))
            await asyncio.gather(*jobs)
            self._read_at = time.monotonic()

    async def _read_readiness(self, runtime: "Runtime") -> None:
        for check, answer in (await readiness(runtime)).items():
            self.ready.labels(check).set(1 if answer == "ok" else 0)

    async def _read_database(self, pool: asyncpg.Pool, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout), pool.acquire() as conn:
                answers = [(spec, await conn.fetch(spec.query)) for spec in self.specs]
        except Exception as exc:  # noqa: BLE001 - the figures stay as last read; /readyz reports the database
            log.debug("database gauges not refreshed: %s", type(exc).__name__)
            return
        for spec, rows in answers:
            gauge = self.gauges[spec.name]
            if not spec.labels:
                gauge.set(float(rows[0]["value"] or 0) if rows else 0.0)
                continue
            gauge.clear()
            for row in rows:
                gauge.labels(*(str(row[label]) for label in spec.labels)).set(float(row["value"] or 0))
