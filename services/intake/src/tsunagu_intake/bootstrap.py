"""Composition root of the intake service: the one place its parts are wired together."""

from __future__ import annotations

from pathlib import Path

from tsunagu_servicehost import Service

MIGRATIONS = Path(__file__).resolve().parent / "adapters" / "migrations"


def build_service() -> Service:
    return Service(
        name="intake",
        title="Tsunagu 相談受付 (intake)",
        migrations=MIGRATIONS,
    )
