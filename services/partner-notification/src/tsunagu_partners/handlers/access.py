"""What a partner may act on: referrals addressed to it, on cases it holds consent or a basis for."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import asyncpg

from tsunagu_contracts.codes import ConsentPurpose
from tsunagu_partners.domain.answers import CLOSED
from tsunagu_partners.domain.routing import referral_purposes
from tsunagu_servicehost.errors import Refused

ACTIVE = frozenset({"requested", "accepted", "contact_made"})


async def referral_for(conn: asyncpg.Connection, partner_id: UUID, referral_id: UUID, *, today: date,
                       refused_ja: str, refused_en: str) -> tuple[asyncpg.Record, asyncpg.Record]:
    """The referral addressed to this partner, and the consent or statutory basis that lets it act:
    a consent for a purpose the referral's need serves (routing.referral_purposes), or any basis.

    Refuses with 404 when the referral is not addressed to the partner, 403 when the case is closed,
    the referral has left the partner, or nothing (or no longer anything) lets it see the case.
    """
    referral = await conn.fetchrow("SELECT case_id, municipality_code, need, status FROM partner_referrals "
                                   "WHERE referral_id = $1 AND partner_id = $2", referral_id, partner_id)
    if referral is None:
        raise Refused.not_found("この団体宛ての紹介", "referral addressed to this partner")
    if referral["status"] == CLOSED:
        raise Refused(403, "この相談は終了したため、紹介への回答や本人情報の取得はできません。",
                      "the case is closed: the partner no longer answers this referral or receives the person's "
                      "details")
    if referral["status"] not in ACTIVE:
        raise Refused(403, "この紹介は終了しているか、他の紹介先に移っています。",
                      f"the referral is {referral['status']}: it is no longer with this partner")
    purposes = sorted(referral_purposes(referral["need"]))
    grant = await conn.fetchrow(
        "SELECT basis, purpose FROM permissions WHERE case_id = $1 AND partner_id = $2 AND revoked_at IS NULL "
        "AND (valid_until IS NULL OR valid_until >= $3) AND (basis <> 'consent' OR purpose = ANY($4::text[])) "
        # Consent before a statutory basis; among consents, the one given for the need's own support
        # (what it lets the partner receive is the most this referral may get).
        "ORDER BY basis = 'consent' DESC, purpose = $5 ASC, grant_id LIMIT 1",
        referral["case_id"], partner_id, today, purposes, ConsentPurpose.REFERRAL)
    if grant is not None:
        return referral, grant
    other = await conn.fetchval(
        "SELECT array_agg(DISTINCT purpose ORDER BY purpose) FROM permissions WHERE case_id = $1 AND partner_id = $2 "
        "AND revoked_at IS NULL AND (valid_until IS NULL OR valid_until >= $3)", referral["case_id"], partner_id, today)
    if other:
        needed = [ConsentPurpose(p) for p in purposes]
        raise Refused(403, f"本人の同意はこの紹介の目的のためのものではありません"
                           f"（必要な同意の目的: {'、'.join(p.label_ja for p in needed)}）。",
                      f"the person's consent to this partner is for {', '.join(other)}, not for this referral "
                      f"(it needs one for {' or '.join(needed)})")
    raise Refused(403, refused_ja, refused_en)
