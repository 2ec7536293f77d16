"""Composition root of the partner-notification service: the one place its parts are wired together."""

from __future__ import annotations

from pathlib import Path

from tsunagu_servicehost import Service

MIGRATIONS = Path(__file__).resolve().parent / "adapters" / "migrations"


def build_service() -> Service:
    return Service(
        name="partner-notification",
        title="Tsunagu 連携団体通知 (partner notification)",
        migrations=MIGRATIONS,
    )
