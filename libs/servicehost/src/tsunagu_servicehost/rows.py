"""Database rows as JSON for HTTP answers: timestamps and dates in ISO 8601, ids as strings."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from uuid import UUID


def jsonable(row: Mapping) -> dict:
    return {k: (v.isoformat() if isinstance(v, date | datetime) else str(v) if isinstance(v, UUID) else v)
            for k, v in dict(row).items()}
