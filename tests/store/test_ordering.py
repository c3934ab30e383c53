"""V-13 across municipalities: which version of a person a tier keeps as current."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from store.ordering import is_duplicate, supersedes
from store.records import ChangeReason, ProvidedIdentity, RecordStatus, Sex


def _p(
    muni: str,
    seq: int,
    status: RecordStatus,
    on: date = date(2026, 1, 1),
    previous: str | None = None,
    since: date | None = None,
) -> ProvidedIdentity:
    return ProvidedIdentity(
        resident_code="12345678903",
        name_kanji="山田　太郎",
        name_kana="ヤマダ　タロウ",
        name_kana_seion="ヤマタタロウ",
        birth_date=date(1990, 1, 1),
        sex=Sex.MALE,
        address="どこか",
        change_reason=ChangeReason.MOVE_IN
        if status is RecordStatus.CURRENT
        else ChangeReason.MOVE_OUT,
        change_date=on,
        municipality_code=muni,
        record_status=status,
        sequence=seq,
        previous_municipality_code=previous,
        became_resident_on=since,
    )


@given(st.integers(1, 10**6), st.integers(1, 10**6))
def test_same_municipality_orders_by_sequence(a: int, b: int) -> None:
    old, new = _p("041009", a, RecordStatus.CURRENT), _p("041009", b, RecordStatus.CURRENT)
    assert supersedes(old, new) is (b > a)
    assert is_duplicate(old, new) is (a == b)


@given(st.integers(1, 10**6), st.integers(1, 10**6))
def test_old_citys_move_out_never_removes_the_new_citys_resident(a: int, b: int) -> None:
    moved_in = _p("131016", a, RecordStatus.CURRENT)
    late_move_out = _p("041009", b, RecordStatus.REMOVED)
    assert not supersedes(moved_in, late_move_out)
    assert supersedes(late_move_out, moved_in)
    assert not is_duplicate(moved_in, late_move_out)


def test_between_two_cities_of_equal_status_the_later_change_wins() -> None:
    early = _p("041009", 9, RecordStatus.REMOVED, date(2026, 1, 1))
    later = _p("131016", 1, RecordStatus.REMOVED, date(2026, 2, 1))
    assert supersedes(early, later)
    assert not supersedes(later, early)


def test_anything_supersedes_nothing() -> None:
    assert supersedes(None, _p("041009", 1, RecordStatus.REMOVED))


@given(st.integers(1, 10**6), st.integers(1, 10**6), st.sampled_from(list(RecordStatus)[:2]))
def test_a_late_notice_from_the_old_city_never_overwrites_the_move_in(
    a: int, b: int, old_status: RecordStatus
) -> None:
    """A → B on one day: B's 転入 (from A) arrives before A's last 転居 or its 転出."""
    moved_in = _p("131016", a, RecordStatus.CURRENT, previous="041009", since=date(2026, 1, 1))
    late = _p("041009", b, old_status, previous=None, since=date(2020, 1, 1))
    assert not supersedes(moved_in, late)
    assert supersedes(late, moved_in)


def test_a_return_to_an_earlier_city_is_decided_by_the_later_residence() -> None:
    first_b = _p("131016", 5, RecordStatus.CURRENT, previous="041009", since=date(2025, 1, 1))
    back_in_a = _p("041009", 9, RecordStatus.CURRENT, previous="131016", since=date(2026, 3, 1))
    assert supersedes(first_b, back_in_a)
    assert not supersedes(back_in_a, first_b)
