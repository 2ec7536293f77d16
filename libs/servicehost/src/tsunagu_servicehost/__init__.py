"""One call that starts a Tsunagu service.

A service describes itself as a `Service` (its name, HTTP routers, Kafka subscribers and
migrations) in its composition root; `main(service)` does the rest: settings from the
environment, the Kafka broker with tracing and metrics, the PostgreSQL pool, `/healthz`,
`/readyz`, `/metrics` (HTTP requests by route, consumer lag, dead letters, the service's own
gauges), `/openapi.json`, and the `serve` / `migrate` commands.
"""

from tsunagu_servicehost.app import Runtime, build_app
from tsunagu_servicehost.cli import main
from tsunagu_servicehost.metrics import DatabaseGauge
from tsunagu_servicehost.service import Service
from tsunagu_servicehost.settings import ServiceSettings

__all__ = ["DatabaseGauge", "Runtime", "Service", "ServiceSettings", "build_app", "main"]
