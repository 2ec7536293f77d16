"""Pages of the partner role."""

from __future__ import annotations

from fastapi import APIRouter


def build_router() -> APIRouter:
    router = APIRouter(prefix="/partner")
    return router
