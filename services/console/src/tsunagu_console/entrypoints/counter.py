"""Pages of the counter role."""

from __future__ import annotations

from fastapi import APIRouter


def build_router() -> APIRouter:
    router = APIRouter(prefix="/counter")
    return router
