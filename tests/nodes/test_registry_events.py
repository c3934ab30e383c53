"""Every 異動 the registry emits is an update the CS accepts (the feed never trips its own rules).

The events are pure functions; each is checked against store.validation with the person's current
record, over generated residents, and the record the CS would build is compared with the
registry's own view of the person.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes import registry_events as ev
from store.codes import random_individual_number, random_resident_code
from store.population import generate
from store.records import ChangeReason, IdentityRecord, record_to_dict
from store.validation import apply_update, validate_update

TODAY = date(2026, 11, 26)
PEOPLE = [p for p in generate("041009", 400, seed=3) if p.register_status == "current"]


def _accepts(update: dict, current: IdentityRecord | None) -> IdentityRecord:
    typed, violations = validate_update(update, current)
    assert violations == [], violations
    assert typed is not None
    return apply_update(
        current, typed, now=datetime(2026, 11, 26, tzinfo=UTC), operator_id="r", terminal_id="r"
    )


def _person(i: int) -> tuple[dict, IdentityRecord]:
    record = PEOPLE[i % len(PEOPLE)].record
    return record_to_dict(record), record


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 2**32))
def test_move_within_and_correction_are_accepted(i: int, seed: int) -> None:
    person, record = _person(i)
    new, update = ev.move_within(person, TODAY, record.sequence + 1, random.Random(seed))
    after = _accepts(update, record)
    assert after.address == new["address"] != record.address
    assert after.name_kanji == record.name_kanji  # V-3: nothing but the address moved
    fixed, update = ev.correction(person, TODAY, record.sequence + 2)
    assert _accepts(update, after).name_kana == fixed["name_kana"]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([ChangeReason.DEATH, ChangeReason.MOVE_OUT]))
def test_removals_are_accepted_and_remove(i: int, reason: ChangeReason) -> None:
    person, record = _person(i)
    after = _accepts(ev.removal(person, reason, TODAY, record.sequence + 1), record)
    assert not after.is_current


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32))
def test_birth_then_number_then_code_change(seed: int) -> None:
    rng = random.Random(seed)
    parent, _ = _person(seed)
    code = random_resident_code(rng)
    person, update = ev.birth(code, "041009", TODAY, 1, rng, parent)
    born = _accepts(update, None)
    assert born.name_kanji.split("\u3000")[0] == parent["name_kanji"].split("\u3000")[0]
    assert born.address == parent["address"]
    number = random_individual_number(rng)
    person, update = ev.number_assignment(person, number, TODAY, 2)
    numbered = _accepts(update, born)
    assert numbered.individual_number == number
    new_code = random_resident_code(rng)
    person, update = ev.code_change(person, new_code, TODAY, 3)
    changed = _accepts(update, numbered)
    assert (changed.resident_code, changed.old_resident_code) == (new_code, code)


@pytest.mark.parametrize("from_municipality", ["131016", None])
def test_move_in_of_a_person_known_elsewhere(from_municipality: str | None) -> None:
    person, record = _person(7)
    _moved, update = ev.move_in(person, "042021", from_municipality, TODAY, 1, random.Random(1))
    arrived = _accepts(update, None)
    assert arrived.municipality_code == "042021"
    assert arrived.individual_number == record.individual_number  # the number travels
    expected = ChangeReason.MOVE_IN if from_municipality else ChangeReason.MOVE_IN_FROM_ABROAD
    assert arrived.change_reason is expected
