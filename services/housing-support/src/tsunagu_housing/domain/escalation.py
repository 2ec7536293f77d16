"""When a check-in must reach the responsible member at once, without waiting for a missed one."""

from __future__ import annotations

from tsunagu_contracts.codes import CheckInEscalationReason, CheckInResult


def escalation(previous: CheckInResult | None, result: CheckInResult) -> CheckInEscalationReason | None:
    """An emergency, or nobody at home twice in a row (the second absence is when a person living
    alone may already be lying ill: 孤立死 is what check-ins exist to prevent)."""
    if result is CheckInResult.EMERGENCY:
        return CheckInEscalationReason.EMERGENCY
    if result is CheckInResult.NOT_AT_HOME and previous is CheckInResult.NOT_AT_HOME:
        return CheckInEscalationReason.NOT_AT_HOME_TWICE
    return None
