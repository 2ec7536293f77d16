"""Fixtures shared by the cross-service tests."""

import copy

import pytest

CONSULTATION = {
    "person": {"name": "座間 花子", "name_kana": "ざま はなこ", "birth_date": "1968-04-02"},
    "counter": "tax", "channel": "counter", "urgency": "high",
    "needs": ["rent_loan", "housing", "debt", "health"], "primary_need": "rent_loan",
    "consents": [{"recipient": {"kind": "division", "division": "housing"}, "purpose": "housing_support",
                  "method": "written"}],
    "screening": {"chart_version": "2026.1", "cues": ["rent_arrears", "debt_collection"],
                  "confirmed": ["rent_loan", "housing", "debt"]},
    "notes": "納税相談の際、家賃も3か月滞納していると話された。",
}


@pytest.fixture
def consultation():
    """A consultation body with four needs, one of them housing; `consultation(urgency="normal")` changes it."""
    return lambda **changes: copy.deepcopy(CONSULTATION) | changes
