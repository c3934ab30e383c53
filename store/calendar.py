"""営業日 (business days): the days a Japanese city office is open.

Used for the retention rule of 送付先情報 (「連携後速やか（１営業日後）に削除」, seed-digest §4.3)
and anything else counted in business days. A day is closed when it is

- a Saturday or Sunday;
- a national holiday under 国民の祝日に関する法律, including 振替休日 and 国民の休日 — taken from
  the ``holidays`` package (``country_holidays("JP")``);
- in 年末年始, 29 December to 3 January: city offices close then under 地方自治法第4条の2 and
  each city's 休日条例 (the usual wording: 「12月29日から翌年の1月3日までの日」). Decided
  here because the seed's "one business day after" sending on 28 December must not fall on
  29 December, when nobody is there to run the deletion.

Outside the years the ``holidays`` package knows (roughly 1949–2099) only weekends and 年末年始
count; nothing in the emulator reaches that far.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays


@lru_cache(maxsize=64)
def _national_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("JP", years=year))


def is_new_year_closure(d: date) -> bool:
    """年末年始 (12/29–1/3)."""
    return (d.month == 12 and d.day >= 29) or (d.month == 1 and d.day <= 3)


def is_business_day(d: date) -> bool:
    """Open for business: not a weekend, a national holiday or 年末年始."""
    return d.weekday() < 5 and not is_new_year_closure(d) and d not in _national_holidays(d.year)


def add_business_days(d: date, n: int) -> date:
    """The date ``n`` business days after ``d`` (before it when ``n`` is negative).

    ``d`` itself need not be a business day and is never counted: one business day after a
    Saturday is the following Monday (if open). ``n == 0`` returns ``d`` unchanged.
    """
    step = timedelta(days=1 if n >= 0 else -1)
    remaining = abs(n)
    current = d
    while remaining:
        current += step
        if is_business_day(current):
            remaining -= 1
    return current
