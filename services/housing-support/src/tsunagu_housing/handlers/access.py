"""Who may act on a support: the council on all, a partner member on those it leads or has a task on."""

from __future__ import annotations

from uuid import UUID

from tsunagu_servicehost.errors import Rejected
from tsunagu_housing.domain.model import Actor, Support


async def support_for(uow, support_id: UUID, actor: Actor, *, lock: bool = False) -> Support:
    """The support, locked when asked; 404 for a partner it does not concern, so ids reveal nothing."""
    support = await uow.repo.support(support_id, lock=lock)
    if support is None or (actor.is_partner and not await uow.repo.partner_is_involved(support_id, actor.partner_id)):
        raise Rejected.not_found("居住支援", "housing support")
    return support


async def member_acting(uow, member_id: UUID, actor: Actor):
    """The member named in a request; a partner may only name itself."""
    member = await uow.repo.member(member_id)
    if member is None:
        raise Rejected.invalid("member_id", "協議会の構成員が見つかりません。", "no such council member")
    if actor.is_partner and member.partner_id != actor.partner_id:
        raise Rejected.forbidden("他の構成員として記録することはできません。", "a partner may record only as itself")
    return member
