"""Composition root of the housing-support service: the one place its parts are wired together."""

from __future__ import annotations

from pathlib import Path

from tsunagu_servicehost import Service

MIGRATIONS = Path(__file__).resolve().parent / "adapters" / "migrations"


def build_service() -> Service:
    return Service(
        name="housing-support",
        title="Tsunagu 居住支援 (housing support)",
        migrations=MIGRATIONS,
    )
