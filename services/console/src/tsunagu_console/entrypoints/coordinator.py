"""Pages of the coordinator role."""

from __future__ import annotations

from fastapi import APIRouter


def build_router() -> APIRouter:
    router = APIRouter(prefix="/coordinator")
    return router
