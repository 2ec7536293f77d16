"""A day or a moment that arrives as a number is refused, not read as Unix time (1970-01-01)."""

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from tsunagu_contracts.dates import CalendarDate, Moment

DAY = TypeAdapter(CalendarDate)
MOMENT = TypeAdapter(Moment)
numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False)


@given(number=numbers, as_text=st.booleans())
def test_a_number_is_not_a_day(number, as_text):
    with pytest.raises(ValidationError) as refused:
        DAY.validate_python(str(number) if as_text else number)
    assert refused.value.errors()[0]["type"] == "date_parsing"


@given(number=numbers, as_text=st.booleans())
def test_a_number_is_not_a_moment(number, as_text):
    with pytest.raises(ValidationError) as refused:
        MOMENT.validate_python(str(number) if as_text else number)
    assert refused.value.errors()[0]["type"] == "datetime_parsing"


@pytest.mark.parametrize("text", ["0", "-7.56925678553733e-202", "1700006400", "20261101", "2026-11-01T00:00:00Z"])
def test_the_query_values_fuzzing_found_are_refused_as_days(text):
    with pytest.raises(ValidationError):
        DAY.validate_python(text)


@given(day=st.dates(min_value=date(1000, 1, 1)))
def test_a_day_written_as_yyyy_mm_dd_is_that_day(day):
    assert DAY.validate_python(day.isoformat()) == day
    assert DAY.validate_json(f'"{day.isoformat()}"') == day


def test_a_moment_written_as_rfc_3339_text_is_that_moment():
    assert MOMENT.validate_python("2026-11-27T10:15:00+09:00") == datetime(2026, 11, 27, 1, 15, tzinfo=UTC)
