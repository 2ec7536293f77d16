"""How housing support's progress reads on the つなぐシート's housing referral."""

from __future__ import annotations

from tsunagu_contracts.codes import CheckInKind, ContactMethod, ReferralOutcome, TenancyEndReason

NOT_HOUSED = {
    TenancyEndReason.PERSON_WITHDREW: ReferralOutcome.PERSON_WITHDREW,
    TenancyEndReason.MOVED_TO_FACILITY: ReferralOutcome.REFERRED_ELSEWHERE,
    TenancyEndReason.MOVED_OUT: ReferralOutcome.REFERRED_ELSEWHERE,
}


def outcome(reason: TenancyEndReason, *, housed: bool) -> ReferralOutcome:
    """A support that found the person a home did what the referral asked, however the tenancy
    later ended; one that ended before moving in says why help did not follow."""
    if housed:
        return ReferralOutcome.SUPPORTED
    return NOT_HOUSED.get(reason, ReferralOutcome.OTHER)


def contact_method(kind: CheckInKind | None) -> ContactMethod:
    return ContactMethod.PHONE if kind is CheckInKind.SAFETY_CONTACT else ContactMethod.HOME_VISIT
