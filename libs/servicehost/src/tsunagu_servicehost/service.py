"""What a service tells the host about itself, built in its composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter

from tsunagu_servicehost.metrics import DatabaseGauge

if TYPE_CHECKING:
    from tsunagu_servicehost.app import Runtime
    from tsunagu_servicehost.settings import ServiceSettings


@dataclass(frozen=True)
class Service:
    name: str
    """Short name: the OpenTelemetry service name, the Kafka client id and consumer-group prefix."""
    title: str
    """Title of the OpenAPI document, Japanese first."""
    migrations: Path
    """Alembic script directory of the service's own database."""
    http: Callable[["Runtime"], Sequence[APIRouter]] | None = None
    """Builds the service's HTTP routers; they reach the database and broker through the runtime."""
    internal_http: Callable[["Runtime"], Sequence[APIRouter]] | None = None
    """Builds the routers of the internal API (service-to-service), served only on the internal
    port (`TSUNAGU_INTERNAL_PORT`), never on the public one."""
    subscribe: Callable[["Runtime"], None] | None = None
    """Registers the service's Kafka subscribers on `runtime.broker`; called before the broker starts."""
    on_start: Sequence[Callable[["Runtime"], Awaitable[None]]] = field(default=())
    """Background work started once the broker and pool are up (relays, timers)."""
    gauges: Sequence[DatabaseGauge] = ()
    """Figures read from the service's database when /metrics is scraped (what is overdue, held, disabled)."""
    checks: Sequence[Callable[[], None]] = ()
    """Run before serving; each exits with a clear message when the service's own settings are missing."""
    commands: Mapping[str, Callable[["ServiceSettings", list[str]], None]] = field(default_factory=dict)
    """Commands of the service's own beside serve/migrate/…: name → run(settings, the arguments after it)."""
    version: str = "0.1.0"
