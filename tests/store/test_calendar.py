"""営業日: weekends, national holidays (with 振替休日) and 年末年始 are closed."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.calendar import add_business_days, is_business_day, is_new_year_closure


@pytest.mark.parametrize(
    ("day", "open_"),
    [
        (date(2024, 7, 12), True),  # Friday
        (date(2024, 7, 13), False),  # Saturday
        (date(2024, 7, 14), False),  # Sunday
        (date(2024, 7, 15), False),  # Monday, 海の日
        (date(2024, 7, 16), True),
        (date(2024, 2, 12), False),  # 振替休日 for 建国記念の日 on a Sunday
        (date(2024, 5, 3), False),  # 憲法記念日
        (date(2024, 5, 6), False),  # 振替休日
        (date(2024, 5, 7), True),
        (date(2026, 9, 22), False),  # 国民の休日 between 敬老の日 and 秋分の日
        (date(2024, 12, 27), True),  # last Friday before 年末年始
        (date(2024, 12, 30), False),  # Monday in 年末年始
        (date(2025, 1, 2), False),
        (date(2025, 1, 3), False),  # Friday, still closed
        (date(2025, 1, 6), True),
        (date(2027, 12, 28), True),  # Tuesday before the closure
        (date(2027, 12, 29), False),  # Wednesday, closure starts
    ],
)
def test_is_business_day(day: date, open_: bool) -> None:
    assert is_business_day(day) is open_


def test_friday_before_a_monday_holiday() -> None:
    # 2024-07-12 (Fri) + 1 → skips Sat, Sun and 海の日 (Mon 15th) → Tue 16th
    assert add_business_days(date(2024, 7, 12), 1) == date(2024, 7, 16)
    assert add_business_days(date(2024, 7, 12), 2) == date(2024, 7, 17)
    assert add_business_days(date(2024, 7, 16), -1) == date(2024, 7, 12)


def test_golden_week() -> None:
    # Thu 2 May 2024 + 1 → Fri 3rd 憲法記念日, 4th, 5th, Mon 6th 振替休日 → Tue 7th
    assert add_business_days(date(2024, 5, 2), 1) == date(2024, 5, 7)


def test_year_end_closure() -> None:
    # Sent Fri 27 Dec 2024 → deleted Mon 6 Jan 2025 (28th–5th closed)
    assert add_business_days(date(2024, 12, 27), 1) == date(2025, 1, 6)
    assert is_new_year_closure(date(2024, 12, 29))
    assert not is_new_year_closure(date(2024, 12, 28))
    assert not is_new_year_closure(date(2025, 1, 4))


def test_from_a_closed_day_counts_the_next_open_day() -> None:
    assert add_business_days(date(2024, 7, 13), 1) == date(2024, 7, 16)
    assert add_business_days(date(2024, 7, 13), 0) == date(2024, 7, 13)


dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))


@settings(max_examples=100)
@given(dates, st.integers(min_value=1, max_value=30))
def test_add_business_days_lands_on_an_open_day_and_counts_exactly(d: date, n: int) -> None:
    end = add_business_days(d, n)
    assert end > d
    assert is_business_day(end)
    open_days = sum(is_business_day(d + timedelta(days=i)) for i in range(1, (end - d).days + 1))
    assert open_days == n


@settings(max_examples=100)
@given(dates, st.integers(min_value=1, max_value=30))
def test_backwards_inverts_forwards_on_open_days(d: date, n: int) -> None:
    if is_business_day(d):
        assert add_business_days(add_business_days(d, n), -n) == d
