"""T-18 audit reports (nodes/cs_sessions.py REPORTS): pure functions over usage entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

from nodes.cs_sessions import REPORTS

JST = timezone(timedelta(hours=9))


def e(
    when: datetime,
    user: str = "op1",
    type: str = "cs.op.lookup",
    target: str = "12345678903",
    outcome: str = "ok",
) -> SimpleNamespace:
    return SimpleNamespace(
        at=when.astimezone(UTC),
        user_id=user,
        terminal_id="term.1",
        task="t",
        target=target,
        message_type=type,
        outcome=outcome,
    )


def test_night_and_holiday_access() -> None:
    rows = REPORTS["night_holiday"](
        [
            e(datetime(2026, 11, 27, 10, 0, tzinfo=JST)),  # Friday morning: normal
            e(datetime(2026, 11, 27, 21, 30, tzinfo=JST)),  # Friday night
            e(datetime(2026, 11, 23, 11, 0, tzinfo=JST)),  # 勤労感謝の日
            e(datetime(2026, 11, 28, 11, 0, tzinfo=JST)),  # Saturday
            e(datetime(2026, 11, 27, 22, 0, tzinfo=JST), user="system:purge"),  # not a person
        ],
        None,
    )[1]
    assert [(r[0][:16], r[1]) for r in rows] == [
        ("2026-11-27 21:30", "夜間"),
        ("2026-11-23 11:00", "休日"),
        ("2026-11-28 11:00", "休日"),
    ]


def test_failed_logins_mass_searches_and_repeated_lookups() -> None:
    day = datetime(2026, 11, 27, 10, 0, tzinfo=JST)
    entries = [e(day, type="cs.op.login", outcome="refused:bad_card"), e(day, type="cs.op.login")]
    entries += [
        e(day + timedelta(minutes=i), user="busy", type="cs.op.search", target="") for i in range(5)
    ]
    entries += [e(day, user="calm", type="cs.op.search", target="")]
    entries += [e(day, user="curious") for _ in range(3)] + [
        e(day, user="curious", target="98765432109")
    ]
    assert [r[3] for r in REPORTS["failed_logins"](entries, None)[1]] == ["bad_card"]
    assert REPORTS["mass_searches"](entries, 5)[1] == [["2026-11-27", "busy", "5"]]
    repeated = REPORTS["repeated_lookups"](entries, 3)[1]
    assert [(r[0], r[1], r[2]) for r in repeated] == [("curious", "12345678903", "3")]
