"""`/healthz` (the process answers), `/readyz` (its Kafka and database work) and `/metrics`.

/readyz tells why a dependency is not usable (hosts, ports, database errors) only to the ops role;
anyone else, an orchestrator's health check included, gets the status code and the bare status.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from tsunagu_servicehost.auth import IssuerUnavailable, Role, TokenRefused, TokenVerifier

if TYPE_CHECKING:
    from tsunagu_servicehost.app import Runtime


class Readiness(BaseModel):
    status: str = Field(examples=["ready"], description="`ready` or `unavailable`.")
    checks: dict[str, str] | None = Field(
        default=None, examples=[{"kafka": "ok", "database": "ok"}],
        description="Each dependency: `ok`, or why it is not usable. Only with a token of the ops role.")


async def _is_ops(request: Request, tokens: TokenVerifier) -> bool:
    """Whether the request carries a valid token of the ops role; no token, a bad one, or one that
    cannot be checked now is simply not ops."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    try:
        return (await tokens.read(token.strip())).role is Role.OPS
    except (TokenRefused, IssuerUnavailable):
        return False


def _reason(exc: BaseException) -> str:
    # The exception type and message only: connection errors never contain the password.
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}".rstrip(": ")[:200]


async def check_database(runtime: "Runtime") -> str:
    try:
        async with asyncio.timeout(runtime.settings.readiness_timeout_s):
            await runtime.db.fetchval("SELECT 1")
    except TimeoutError:
        return f"unreachable: no answer within {runtime.settings.readiness_timeout_s:g}s"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; the reason is reported
        return f"unreachable: {_reason(exc)}"
    return "ok"


async def check_kafka(runtime: "Runtime") -> str:
    try:
        ok = await runtime.broker.ping(timeout=runtime.settings.readiness_timeout_s)
    except Exception as exc:  # noqa: BLE001
        return f"unreachable: {_reason(exc)}"
    return "ok" if ok else f"unreachable: no answer within {runtime.settings.readiness_timeout_s:g}s"


def check_consumers(runtime: "Runtime") -> str:
    """A consumer pauses while its database cannot apply records, even one that answers `SELECT 1`
    (read-only after a fail-over, say); the flag it sets is the only place that shows."""
    paused = dict(runtime.paused_consumers)
    return "; ".join(f"{topic} paused: {reason}" for topic, reason in sorted(paused.items())) or "ok"


async def readiness(runtime: "Runtime") -> dict[str, str]:
    """Each dependency: `ok`, or why the service cannot use it (what /readyz answers)."""
    kafka, database = await asyncio.gather(check_kafka(runtime), check_database(runtime))
    return {"kafka": kafka, "database": database, "consumers": check_consumers(runtime)}


def health_router(runtime: "Runtime") -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="生存確認 (liveness)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.service.name}

    @router.get("/readyz", summary="準備状態 (readiness)", response_model=Readiness,
                responses={503: {"model": Readiness, "description": "A dependency is not usable."}})
    async def readyz(request: Request) -> JSONResponse:
        checks = await readiness(runtime)
        ready = all(v == "ok" for v in checks.values())
        body = Readiness(status="ready" if ready else "unavailable")
        if await _is_ops(request, runtime.tokens):
            body.checks = checks
        return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        if runtime.figures is not None:
            await runtime.figures.refresh(runtime)
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    return router
