"""The sample people the tests register, in one place: the consultations the end-to-end tests send
are built from them, and the personal-data scanner (tsunagu_teststack.pii) looks for exactly them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class SamplePerson:
    name: str
    name_kana: str
    birth_date: date
    phone: str
    address: str

    def as_request(self) -> dict:
        """The `person` of a consultation request."""
        return {"name": self.name, "name_kana": self.name_kana, "birth_date": self.birth_date.isoformat(),
                "phone": self.phone, "address": self.address}


HANAKO = SamplePerson(name="座間 花子", name_kana="ざま はなこ", birth_date=date(1968, 4, 2),
                      phone="046-000-0000", address="座間市緑ケ丘9丁目9番9号")

SAMPLE_PEOPLE = (HANAKO,)
