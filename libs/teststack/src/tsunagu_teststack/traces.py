"""A Jaeger for tests, and reading traces back through its query API (what an operator sees)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from dataclasses import dataclass

import httpx

from tsunagu_teststack.infrastructure import repo_root
from tsunagu_teststack.services import free_port

BUILD_TIMEOUT_S = 1800  # the first build fetches and compiles Jaeger: minutes on two cores


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    attributes: dict[str, str]


def _jaegerctl(*args: str, timeout: float) -> str:
    result = subprocess.run([sys.executable, str(repo_root() / "deploy" / "jaegerctl.py"), *args],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"deploy/jaegerctl.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class Jaeger:
    name: str
    ui: str
    otlp_endpoint: str

    @classmethod
    def start(cls) -> "Jaeger":
        _jaegerctl("build", timeout=BUILD_TIMEOUT_S)
        name = f"test-{secrets.token_hex(4)}"
        ports = {"--ui-port": free_port(), "--query-grpc-port": free_port(), "--otlp-grpc-port": free_port(),
                 "--otlp-http-port": free_port()}
        _jaegerctl("start", "--name", name, *(str(x) for pair in ports.items() for x in pair), timeout=120)
        return cls(name, f"http://127.0.0.1:{ports['--ui-port']}", f"http://127.0.0.1:{ports['--otlp-http-port']}")

    def remove(self) -> None:
        _jaegerctl("reset", "--name", self.name, timeout=60)

    async def find(self, service: str, **tags: str) -> list[list[Span]]:
        """The stored traces with a span of `service` that carries all `tags`, each as its spans."""
        params = {"service": service, "limit": "100", "lookback": "1h"}
        if tags:
            params["tags"] = json.dumps(tags)
        async with httpx.AsyncClient(base_url=self.ui, timeout=10) as client:
            response = await client.get("/api/traces", params=params)
        response.raise_for_status()
        return [_spans(trace) for trace in response.json()["data"] or []]

    async def trace(self, trace_id: str) -> list[Span]:
        async with httpx.AsyncClient(base_url=self.ui, timeout=10) as client:
            response = await client.get(f"/api/traces/{trace_id}")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return [span for trace in response.json()["data"] for span in _spans(trace)]


def _spans(trace: dict) -> list[Span]:
    services = {key: process["serviceName"] for key, process in trace["processes"].items()}
    return [Span(services[span["processID"]], span["operationName"], span["traceID"],
                 {tag["key"]: str(tag["value"]) for tag in span.get("tags", [])})
            for span in trace["spans"]]
