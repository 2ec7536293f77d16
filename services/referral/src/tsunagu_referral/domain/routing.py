"""The routing table: for each need, who to ask, in order. Data, editable by coordinators."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tsunagu_contracts import Recipient
from tsunagu_contracts.codes import NeedCategory, RecipientKind

DEFAULT_ROUTES = Path(__file__).resolve().parent / "routes.json"


def default_routes() -> tuple[dict[NeedCategory, list[Recipient]], Recipient]:
    data = json.loads(DEFAULT_ROUTES.read_text())
    routes = {NeedCategory(need): [Recipient.model_validate(r) for r in rs] for need, rs in data["routes"].items()}
    missing = set(NeedCategory) - set(routes)
    if missing:
        raise ValueError(f"routes.json lacks {sorted(missing)}")
    return routes, Recipient.model_validate(data["fallback"])


FALLBACK = default_routes()[1]
"""When every candidate declined, the coordinator (自立相談支援) takes the need: nobody is turned away."""


def next_candidate(routes: list[tuple[int, Recipient]], asked: Iterable[Recipient], *,
                   divisions_only: bool = False) -> tuple[int, Recipient] | None:
    """The first of a need's ranked candidates not asked yet on the case; then the coordinator; then nobody.

    `divisions_only`: a city division needs no consent to take the need (a partner does), so a need
    whose partner lost the person's consent goes to the first division not yet asked."""
    asked = list(asked)
    for rank, recipient in routes:
        if recipient not in asked and not (divisions_only and recipient.kind is RecipientKind.PARTNER):
            return rank, recipient
    if FALLBACK not in asked:
        return len(routes) + 1, FALLBACK
    return None
