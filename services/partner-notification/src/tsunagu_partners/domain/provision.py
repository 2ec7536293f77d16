"""What of a person a partner receives, by the purpose it receives it for: no more than that needs.

Intake holds the name, its kana, phone, address and the consultation's summary (with the
counter's notes). Each purpose of a consent (or of a statutory basis) gets only the items it
needs (tsunagu_contracts.codes.PROVISION_ITEMS, which intake applies too), and the provision record
lists exactly the items given (個人情報保護法 art. 29). The summary goes to none: a partner learns the
need from the referral, and the notes are the counter's, told in confidence.
"""

from __future__ import annotations

from tsunagu_contracts.codes import provided

__all__ = ["provided"]
