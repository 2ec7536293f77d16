"""Registering council members."""

from __future__ import annotations

from datetime import datetime

from tsunagu_contracts import uuid7
from tsunagu_housing.domain.commands import RegisterMember
from tsunagu_servicehost.errors import Rejected
from tsunagu_housing.domain.members import Member


async def register_member(uow, cmd: RegisterMember, *, now: datetime) -> Member:
    member = Member(uuid7(), cmd.name, cmd.recipient(), frozenset(cmd.takes_on), now)
    if not await uow.repo.add_member(member):
        raise Rejected.conflict("この窓口・団体はすでに構成員として登録されています。",
                                "this division or partner is already a council member")
    return member
