"""Which of the person's consents a partner's referral rests on.

A partner takes a referral, hears of it and fetches the person's details under a consent to
`referral` or to the support the referral's need calls for (`housing_support` for housing,
`employment_support` for job search and trouble at work), or under a statutory basis granted for one
of those purposes. When the last of them ends, the referral no longer rests on anything.

The same mapping is partner-notification's (tsunagu_partners.domain.routing.NEED_PURPOSES), which
decides what the partner may see; the two must agree, and the contracts are where it should live.
"""

from __future__ import annotations

from tsunagu_contracts.codes import ConsentPurpose, NeedCategory

_SUPPORT: dict[NeedCategory, ConsentPurpose] = {
    NeedCategory.HOUSING: ConsentPurpose.HOUSING_SUPPORT,
    NeedCategory.JOB_SEARCH: ConsentPurpose.EMPLOYMENT_SUPPORT,
    NeedCategory.WORK_TROUBLE: ConsentPurpose.EMPLOYMENT_SUPPORT,
}


def purposes_a_referral_rests_on(need: NeedCategory) -> frozenset[ConsentPurpose]:
    support = _SUPPORT.get(need)
    return frozenset({ConsentPurpose.REFERRAL} | ({support} if support else set()))
