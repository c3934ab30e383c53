"""登録時チェック: each rule refuses its violation and accepts the update just beside it."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.codes import random_individual_number, random_resident_code
from store.kana import to_seion
from store.records import (
    IDENTITY_FIELDS,
    UPDATE_WHITELIST,
    ChangeReason,
    IdentityRecord,
    RecordStatus,
    Sex,
    lookup_code,
    replace,
    update_to_dict,
)
from store.validation import (
    REASON_RULES,
    RuleViolation,
    apply_update,
    validate_number_answer,
    validate_search,
    validate_update,
)

SENDAI = "041009"
ISHINOMAKI = "042021"
CODE = "12345678903"
OTHER_CODE = "24727059608"
NUMBER = "123456789018"
OTHER_NUMBER = "983205673214"
NOW = datetime(2024, 6, 1, 3, 0, tzinfo=UTC)

R = ChangeReason


def rules(violations: list[RuleViolation]) -> set[tuple[str, str | None]]:
    return {(v.rule, v.field) for v in violations}


def birth_raw(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "resident_code": CODE,
        "change_reason": "出生",
        "change_date": "2000-04-01",
        "request_number": "REQ-0001",
        "sequence": 10,
        "name_kanji": "山田　太郎",
        "name_kana": "ヤマダ　タロウ",
        "birth_date": "2000-04-01",
        "sex": "1",
        "municipality_code": SENDAI,
        "oaza_code": "101",
        "postcode": "9800803",
        "address": "宮城県仙台市青葉区国分町三丁目7番1号",
        "became_resident_on": "2000-04-01",
        "address_set_on": "2000-04-01",
        "notified_on": "2000-04-10",
        "relationship": "子",
    }
    raw.update(over)
    return raw


def accept(raw: dict[str, Any], current: IdentityRecord | None) -> IdentityRecord:
    update, violations = validate_update(raw, current)
    assert violations == [], violations
    assert update is not None
    return apply_update(current, update, now=NOW, operator_id="op-7", terminal_id="term-3")


def refuse(raw: dict[str, Any], current: IdentityRecord | None) -> set[tuple[str, str | None]]:
    update, violations = validate_update(raw, current)
    assert update is None
    assert violations
    return rules(violations)


@pytest.fixture
def person() -> IdentityRecord:
    return accept(birth_raw(), None)


def next_raw(current: IdentityRecord, reason: ChangeReason, **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "resident_code": current.resident_code,
        "change_reason": reason.value,
        "change_date": "2024-05-20",
        "request_number": "REQ-0002",
        "sequence": current.sequence + 1,
    }
    raw.update(over)
    return raw


def removed(current: IdentityRecord, reason: ChangeReason = R.MOVE_OUT) -> IdentityRecord:
    return accept(next_raw(current, reason), current)


# Per reason: the state it needs and the minimal extra items of a valid update.
MOVE_IN_ITEMS = {
    "name_kanji": "山田　太郎",
    "name_kana": "ヤマダ　タロウ",
    "birth_date": "2000-04-01",
    "sex": "1",
    "municipality_code": SENDAI,
    "address": "宮城県仙台市宮城野区五輪一丁目1番1号",
    "became_resident_on": "2024-05-20",
    "address_set_on": "2024-05-20",
    "notified_on": "2024-05-21",
    "relationship": "世帯主",
}
VALID_CASES: dict[ChangeReason, tuple[str, dict[str, Any]]] = {
    R.MOVE_IN: (
        "removed",
        MOVE_IN_ITEMS
        | {"previous_municipality_code": ISHINOMAKI, "previous_address": "宮城県石巻市穀町1番"},
    ),
    R.MOVE_IN_FROM_ABROAD: ("removed", MOVE_IN_ITEMS | {"previous_address": "アメリカ合衆国"}),
    R.BIRTH: ("none", {}),
    R.ENTRY_BY_AUTHORITY: ("removed", MOVE_IN_ITEMS),
    R.MOVE_OUT: ("current", {"notified_on": "2024-05-10"}),
    R.MOVE_OUT_ABROAD: ("current", {}),
    R.DEATH: ("current", {"change_reason_detail": "病院にて"}),
    R.DECLARED_MISSING: ("current", {}),
    R.REMOVAL_BY_AUTHORITY: ("current", {}),
    R.MOVE_WITHIN: (
        "current",
        {"address": "宮城県仙台市泉区泉中央一丁目1番", "address_set_on": "2024-05-20"},
    ),
    R.ADDRESS_RENAMED: ("current", {"address": "宮城県仙台市青葉区国分町三丁目7番2号"}),
    R.CORRECTION_BY_AUTHORITY: ("current", {"name_kanji": "山田　太朗"}),
    R.RESIDENT_CODE_CHANGE: ("current", {"resident_code": OTHER_CODE, "old_resident_code": CODE}),
    R.NUMBER_ASSIGNMENT: ("current", {"individual_number": NUMBER}),
    R.NUMBER_CHANGE: ("numbered", {"individual_number": OTHER_NUMBER}),
    R.MOVE_OUT_CANCELLED: ("removed", {}),
}


def current_in(state: str, person: IdentityRecord) -> IdentityRecord | None:
    if state == "none":
        return None
    if state == "removed":
        return removed(person)
    if state == "numbered":
        return accept(next_raw(person, R.NUMBER_ASSIGNMENT, individual_number=NUMBER), person)
    return person


def valid_raw(reason: ChangeReason, current: IdentityRecord | None) -> dict[str, Any]:
    extra = VALID_CASES[reason][1]
    if current is None:
        return birth_raw()
    return next_raw(current, reason, **extra)


def test_every_reason_has_a_rule_and_a_case() -> None:
    assert set(REASON_RULES) == set(ChangeReason) == set(VALID_CASES)


@pytest.mark.parametrize("reason", list(ChangeReason))
def test_each_reason_accepts_its_valid_update(reason: ChangeReason, person: IdentityRecord) -> None:
    current = current_in(VALID_CASES[reason][0], person)
    after = accept(valid_raw(reason, current), current)
    assert after.change_reason is reason
    assert after.request_number in ("REQ-0001", "REQ-0002")


# Per reason, a state it must refuse (the neighbour is the accepted case above).
WRONG_STATE: dict[ChangeReason, tuple[str, str]] = {
    R.MOVE_IN: ("current", "V-2"),
    R.MOVE_IN_FROM_ABROAD: ("current", "V-2"),
    R.BIRTH: ("removed", "V-2"),
    R.ENTRY_BY_AUTHORITY: ("current", "V-2"),
    R.MOVE_OUT: ("removed", "V-2"),
    R.MOVE_OUT_ABROAD: ("none", "V-2"),
    R.DEATH: ("removed", "V-2"),
    R.DECLARED_MISSING: ("none", "V-2"),
    R.REMOVAL_BY_AUTHORITY: ("removed", "V-2"),
    R.MOVE_WITHIN: ("removed", "V-2"),
    R.ADDRESS_RENAMED: ("none", "V-2"),
    R.CORRECTION_BY_AUTHORITY: ("removed", "V-2"),
    R.RESIDENT_CODE_CHANGE: ("none", "V-2"),
    R.NUMBER_ASSIGNMENT: ("removed", "V-10"),
    R.NUMBER_CHANGE: ("current", "V-2"),  # not numbered yet
    R.MOVE_OUT_CANCELLED: ("current", "V-2"),
}


@pytest.mark.parametrize("reason", list(ChangeReason))
def test_each_reason_refuses_the_wrong_state(reason: ChangeReason, person: IdentityRecord) -> None:
    state, rule = WRONG_STATE[reason]
    current = current_in(state, person)
    extra = VALID_CASES[reason][1]
    if reason is R.BIRTH:
        raw = birth_raw(sequence=(current.sequence + 1) if current else 1)
    else:
        base = current or person
        raw = next_raw(base, reason, **extra)
    found = refuse(raw, current)
    assert rule in {r for r, _ in found}, found


# Per reason, one item it may not change (V-3) — refused — and the same item sent unchanged,
# which is accepted (the neighbour).
FOREIGN_ITEM: dict[ChangeReason, tuple[str, Any]] = {
    R.MOVE_OUT: ("address", "宮城県仙台市若林区1番"),
    R.MOVE_OUT_ABROAD: ("name_kanji", "別名"),
    R.DEATH: ("birth_date", "2000-04-02"),
    R.DECLARED_MISSING: ("sex", "2"),
    R.REMOVAL_BY_AUTHORITY: ("relationship", "妻"),
    R.MOVE_WITHIN: ("name_kana", "ヤマダ　ジロウ"),
    R.ADDRESS_RENAMED: ("address_set_on", "2024-05-20"),
    R.CORRECTION_BY_AUTHORITY: ("individual_number", NUMBER),
    R.RESIDENT_CODE_CHANGE: ("postcode", "9890000"),
    R.NUMBER_ASSIGNMENT: ("name_kanji", "別名"),
    R.NUMBER_CHANGE: ("address", "宮城県仙台市若林区1番"),
    R.MOVE_OUT_CANCELLED: ("address", "宮城県仙台市若林区1番"),
}


@pytest.mark.parametrize("reason", sorted(FOREIGN_ITEM, key=list(ChangeReason).index))
def test_each_reason_refuses_changing_a_foreign_item(
    reason: ChangeReason, person: IdentityRecord
) -> None:
    current = current_in(VALID_CASES[reason][0], person)
    assert current is not None
    name, value = FOREIGN_ITEM[reason]
    raw = valid_raw(reason, current)
    assert ("V-3", name) in refuse(raw | {name: value}, current)
    unchanged = getattr(current, name)
    wire = unchanged.isoformat() if isinstance(unchanged, date) else unchanged
    accept(raw | {name: wire}, current)


@pytest.mark.parametrize(
    ("reason", "forbidden"),
    [
        (R.BIRTH, "previous_address"),
        (R.BIRTH, "previous_municipality_code"),
        (R.BIRTH, "individual_number"),
        (R.MOVE_IN_FROM_ABROAD, "previous_municipality_code"),
        (R.MOVE_IN, "old_resident_code"),
    ],
)
def test_creating_reasons_refuse_items_they_cannot_carry(
    reason: ChangeReason, forbidden: str, person: IdentityRecord
) -> None:
    current = current_in(VALID_CASES[reason][0], person)
    raw = valid_raw(reason, current)
    value = {
        "previous_address": "宮城県石巻市穀町1番",
        "previous_municipality_code": ISHINOMAKI,
        "individual_number": NUMBER,
        "old_resident_code": OTHER_CODE,
    }[forbidden]
    assert ("V-3", forbidden) in refuse(raw | {forbidden: value}, current)


REQUIRED_ITEM: dict[ChangeReason, str] = {
    R.MOVE_IN: "previous_municipality_code",
    R.MOVE_IN_FROM_ABROAD: "previous_address",
    R.BIRTH: "relationship",
    R.ENTRY_BY_AUTHORITY: "became_resident_on",
    R.MOVE_WITHIN: "address_set_on",
    R.ADDRESS_RENAMED: "address",
    R.RESIDENT_CODE_CHANGE: "old_resident_code",
    R.NUMBER_ASSIGNMENT: "individual_number",
    R.NUMBER_CHANGE: "individual_number",
}


@pytest.mark.parametrize("reason", sorted(REQUIRED_ITEM, key=list(ChangeReason).index))
def test_each_reason_requires_its_items(reason: ChangeReason, person: IdentityRecord) -> None:
    current = current_in(VALID_CASES[reason][0], person)
    raw = valid_raw(reason, current)
    name = REQUIRED_ITEM[reason]
    del raw[name]
    assert ("V-1", name) in refuse(raw, current)


# --- V-2 -------------------------------------------------------------------------------------


def test_v2_move_in_for_a_current_resident(person: IdentityRecord) -> None:
    raw = valid_raw(R.MOVE_IN, removed(person))
    assert ("V-2", "resident_code") in refuse(raw, person)


def test_v2_neighbour_move_in_for_a_prospective_resident(person: IdentityRecord) -> None:
    prospective = replace(person, prospective=True)
    after = accept(valid_raw(R.MOVE_IN, prospective), prospective)
    assert after.is_current and not after.prospective


def test_v2_prospective_person_cannot_move_within(person: IdentityRecord) -> None:
    prospective = replace(person, prospective=True)
    assert ("V-2", "resident_code") in refuse(valid_raw(R.MOVE_WITHIN, person), prospective)


def test_v2_move_in_from_our_own_municipality_is_a_move_within(person: IdentityRecord) -> None:
    gone = removed(person)
    raw = valid_raw(R.MOVE_IN, gone) | {"previous_municipality_code": SENDAI}
    assert ("V-2", "previous_municipality_code") in refuse(raw, gone)


def test_v2_move_out_cancel_needs_a_move_out(person: IdentityRecord) -> None:
    dead = removed(person, R.DEATH)
    assert ("V-2", "change_reason") in refuse(valid_raw(R.MOVE_OUT_CANCELLED, dead), dead)
    abroad = removed(person, R.MOVE_OUT_ABROAD)
    assert accept(valid_raw(R.MOVE_OUT_CANCELLED, abroad), abroad).is_current


def test_v2_birth_dates_must_agree() -> None:
    assert ("V-2", "became_resident_on") in refuse(birth_raw(became_resident_on="2000-04-02"), None)
    assert ("V-2", "change_date") in refuse(birth_raw(change_date="2000-04-03"), None)


def test_v2_move_within_must_change_the_address(person: IdentityRecord) -> None:
    raw = valid_raw(R.MOVE_WITHIN, person) | {"address": person.address}
    assert ("V-2", "address") in refuse(raw, person)


def test_v2_correction_must_correct_something(person: IdentityRecord) -> None:
    raw = next_raw(person, R.CORRECTION_BY_AUTHORITY, name_kanji=person.name_kanji)
    assert ("V-2", "change_reason") in refuse(raw, person)


def test_v2_number_assignment_on_a_numbered_person(person: IdentityRecord) -> None:
    numbered = current_in("numbered", person)
    assert numbered is not None
    raw = valid_raw(R.NUMBER_ASSIGNMENT, numbered) | {"individual_number": OTHER_NUMBER}
    assert ("V-2", "individual_number") in refuse(raw, numbered)


def test_v2_code_change_to_the_same_code(person: IdentityRecord) -> None:
    raw = valid_raw(R.RESIDENT_CODE_CHANGE, person) | {"resident_code": CODE}
    assert ("V-2", "resident_code") in refuse(raw, person)


def test_v2_update_for_another_code(person: IdentityRecord) -> None:
    raw = valid_raw(R.DEATH, person) | {"resident_code": OTHER_CODE}
    assert ("V-2", "resident_code") in refuse(raw, person)


def test_v2_change_before_birth(person: IdentityRecord) -> None:
    assert ("V-2", "change_date") in refuse(
        valid_raw(R.DEATH, person) | {"change_date": "1999-12-31"}, person
    )


# --- V-3: 転居 changes only the address ---------------------------------------------------------


def test_v3_move_within_changing_the_name(person: IdentityRecord) -> None:
    raw = valid_raw(R.MOVE_WITHIN, person) | {"name_kanji": "山田　次郎"}
    assert refuse(raw, person) == {("V-3", "name_kanji")}


def test_v3_neighbour_move_within_with_every_address_item(person: IdentityRecord) -> None:
    raw = valid_raw(R.MOVE_WITHIN, person) | {
        "postcode": "9813133",
        "oaza_code": "202",
        "name_kanji": person.name_kanji,  # sent unchanged: fine
        "birth_date": person.birth_date.isoformat(),
    }
    after = accept(raw, person)
    assert (after.postcode, after.oaza_code) == ("9813133", "202")
    assert after.name_kanji == person.name_kanji


# --- V-5: whitelist ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["timestamp", "name_kana_seion", "record_status", "locked", "operator_id", "colour"]
)
def test_v5_refuses_items_outside_the_whitelist(key: str, person: IdentityRecord) -> None:
    raw = valid_raw(R.DEATH, person) | {key: "x"}
    assert refuse(raw, person) == {("V-5", key)}


def test_v5_neighbour_whitelisted_extra(person: IdentityRecord) -> None:
    accept(valid_raw(R.DEATH, person) | {"change_reason_detail": "自宅にて"}, person)


# --- V-1: formats ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "bad", "good"),
    [
        ("resident_code", "12345678904", "12345678903"),
        ("name_kana", "Yamada", "やまだ たろう"),
        ("name_kanji", " 山田", "山田"),
        ("name_kanji", "山田\x07", "山田"),
        ("birth_date", "2000-02-30", "2000-02-29"),
        ("birth_date", "20000401", "2000-04-01"),
        ("birth_date", "1849-12-31", "1850-01-01"),
        ("sex", "3", "9"),
        ("sex", 1, "1"),
        ("municipality_code", "041008", "041009"),
        ("postcode", "980-0803", "9800803"),
        ("oaza_code", "1a", "1"),
        ("request_number", "REQ 1", "REQ_1"),
        ("sequence", True, 1),
        ("sequence", 0, 1),
        ("sequence", "1", 1),
        ("relationship", "", "子"),
    ],
)
def test_v1_formats(key: str, bad: Any, good: Any) -> None:
    fix = {"birth_date": ("change_date", "became_resident_on", "address_set_on")}
    raw = birth_raw(**{key: bad})
    assert ("V-1", key) in refuse(raw, None)
    good_raw = birth_raw(**{key: good})
    for other in fix.get(key, ()):
        good_raw[other] = good
    accept(good_raw, None)


def test_v1_required_envelope_items() -> None:
    raw = birth_raw()
    del raw["request_number"]
    assert ("V-1", "request_number") in refuse(raw, None)


def test_v1_null_for_a_required_item_vs_clearing_an_optional_one(person: IdentityRecord) -> None:
    raw = next_raw(person, R.CORRECTION_BY_AUTHORITY, name_kanji=None)
    assert ("V-1", "name_kanji") in refuse(raw, person)
    cleared = accept(next_raw(person, R.CORRECTION_BY_AUTHORITY, oaza_code=None), person)
    assert cleared.oaza_code is None


def test_unknown_reason_is_a_format_error() -> None:
    assert ("V-1", "change_reason") in refuse(birth_raw(change_reason="引越し"), None)


# --- V-13: order, freeze, lock -----------------------------------------------------------------


def test_v13_sequence_must_advance(person: IdentityRecord) -> None:
    raw = valid_raw(R.DEATH, person)
    assert refuse(raw | {"sequence": person.sequence}, person) == {("V-13", "sequence")}
    assert ("V-13", "sequence") in refuse(raw | {"sequence": person.sequence - 1}, person)
    accept(raw | {"sequence": person.sequence + 1}, person)


def test_v13_recovery_replay_may_reuse_the_sequence(person: IdentityRecord) -> None:
    raw = valid_raw(R.DEATH, person) | {"sequence": person.sequence, "recovery_sequence": 1}
    fixed = accept(raw, person)
    assert fixed.recovery_sequence == 1
    again = valid_raw(R.MOVE_OUT_CANCELLED, fixed) | {"sequence": fixed.sequence}
    assert ("V-13", "sequence") in refuse(again | {"recovery_sequence": 1}, fixed)


def test_v13_update_prohibited_and_locked(person: IdentityRecord) -> None:
    raw = valid_raw(R.DEATH, person)
    assert ("V-13", "update_prohibited") in refuse(raw, replace(person, update_prohibited=True))
    assert ("V-13", "locked") in refuse(raw, replace(person, locked=True))


# --- V-10 via an update ----------------------------------------------------------------------


def test_v10_numbering_a_removed_person(person: IdentityRecord) -> None:
    gone = removed(person)
    assert ("V-10", "resident_code") in refuse(valid_raw(R.NUMBER_ASSIGNMENT, gone), gone)
    numbered = accept(valid_raw(R.NUMBER_ASSIGNMENT, person), person)
    assert numbered.individual_number == NUMBER


# --- apply_update ----------------------------------------------------------------------------


def test_apply_birth_derives_cs_items() -> None:
    after = accept(birth_raw(name_kanji="髙橋　一郎", name_kana="たかはし いちろう"), None)
    assert after.name_kana_seion == "タカハシイチロウ" == to_seion("たかはし いちろう")
    assert after.name_gaiji_count == 1 and after.gaiji_flag
    assert after.address_gaiji_count == 0
    assert after.record_status is RecordStatus.CURRENT
    assert after.resident_code_since == date(2000, 4, 1)
    assert (after.operator_id, after.terminal_id, after.timestamp) == ("op-7", "term-3", NOW)
    assert after.sex is Sex.MALE and after.birth_date == date(2000, 4, 1)


@pytest.mark.parametrize(
    "reason", [R.MOVE_OUT, R.MOVE_OUT_ABROAD, R.DEATH, R.DECLARED_MISSING, R.REMOVAL_BY_AUTHORITY]
)
def test_apply_removal(reason: ChangeReason, person: IdentityRecord) -> None:
    after = removed(person, reason)
    assert after.record_status is RecordStatus.REMOVED
    assert (after.name_kanji, after.address) == (person.name_kanji, person.address)


def test_apply_code_change_keeps_the_old_code(person: IdentityRecord) -> None:
    raw = valid_raw(R.RESIDENT_CODE_CHANGE, person)
    assert lookup_code(raw) == CODE
    after = accept(raw, person)
    assert (after.resident_code, after.old_resident_code) == (OTHER_CODE, CODE)
    assert after.resident_code_since == date(2024, 5, 20)


def test_apply_correction_recomputes_seion_and_gaiji(person: IdentityRecord) -> None:
    raw = next_raw(
        person, R.CORRECTION_BY_AUTHORITY, name_kana="ヤマザキ ハナコ", former_surname_kanji="髙﨑"
    )
    after = accept(raw, person)
    assert after.name_kana_seion == "ヤマサキハナコ"
    assert after.former_surname_gaiji_count == 2
    assert after.former_surname_gaiji_serial == person.former_surname_gaiji_serial + 1
    assert after.gaiji_flag


def test_apply_move_in_over_a_removed_row_keeps_the_number(person: IdentityRecord) -> None:
    numbered = accept(valid_raw(R.NUMBER_ASSIGNMENT, person), person)
    gone = removed(numbered)
    back = accept(valid_raw(R.MOVE_IN, gone), gone)
    assert back.individual_number == NUMBER and back.is_current
    assert back.previous_municipality_code == ISHINOMAKI


def test_apply_converts_the_clock_to_utc(person: IdentityRecord) -> None:
    update, _ = validate_update(valid_raw(R.DEATH, person), person)
    assert update is not None
    jst = datetime(2024, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=9)))
    after = apply_update(person, update, now=jst, operator_id=None, terminal_id=None)
    assert after.timestamp == NOW and after.timestamp.tzinfo is UTC
    with pytest.raises(ValueError):
        apply_update(person, update, now=datetime(2024, 6, 1), operator_id=None, terminal_id=None)


def test_apply_refuses_an_update_without_its_record() -> None:
    update, _ = validate_update(birth_raw(), None)
    assert update is not None
    death = replace(update, change_reason=R.DEATH)
    with pytest.raises(ValueError):
        apply_update(None, death, now=NOW, operator_id=None, terminal_id=None)


def test_update_round_trips_through_the_wire(person: IdentityRecord) -> None:
    raw = valid_raw(R.MOVE_WITHIN, person)
    update, _ = validate_update(raw, person)
    assert update is not None
    assert update_to_dict(update) == raw


# --- V-10 / V-11: number answers ----------------------------------------------------------------


def four_info(record: IdentityRecord, **over: Any) -> dict[str, Any]:
    answer = {
        "resident_code": record.resident_code,
        "name_kanji": record.name_kanji,
        "birth_date": record.birth_date.isoformat(),
        "sex": record.sex.value,
        "address": record.address,
    }
    answer.update(over)
    return answer


def test_number_answer_matching(person: IdentityRecord) -> None:
    assert validate_number_answer(person, four_info(person), NUMBER) == []
    # spacing differences in the name are not a mismatch
    assert validate_number_answer(person, four_info(person, name_kanji="山田 太郎"), NUMBER) == []


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"name_kanji": "山田　次郎"}, "name_kanji"),
        ({"birth_date": "2000-04-02"}, "birth_date"),
        ({"birth_date": "garbage"}, "birth_date"),
        ({"sex": "2"}, "sex"),
        ({"address": "宮城県仙台市泉区"}, "address"),
        ({"address": None}, "address"),
        ({"resident_code": OTHER_CODE}, "resident_code"),
    ],
)
def test_v11_number_answer_mismatch(
    over: dict[str, Any], field: str, person: IdentityRecord
) -> None:
    assert rules(validate_number_answer(person, four_info(person, **over), NUMBER)) == {
        ("V-11", field)
    }


def test_v11_invalid_or_different_number(person: IdentityRecord) -> None:
    assert rules(validate_number_answer(person, four_info(person), "123456789012")) == {
        ("V-11", "individual_number")
    }
    numbered = replace(person, individual_number=NUMBER)
    assert validate_number_answer(numbered, four_info(numbered), NUMBER) == []
    assert rules(validate_number_answer(numbered, four_info(numbered), OTHER_NUMBER)) == {
        ("V-11", "individual_number")
    }


def test_v10_number_answer_for_a_removed_person(person: IdentityRecord) -> None:
    gone = removed(person)
    assert ("V-10", "record_status") in rules(validate_number_answer(gone, four_info(gone), NUMBER))


# --- V-7: search -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "criteria",
    [
        {"name_kanji": "山田太郎", "address": "仙台市青葉区"},
        {"name_kana": "やまだ", "birth_date": "2000-04-01"},
        {"name_kanji": "山田", "birth_date": "2000-04-01", "sex": "1"},
        {"name_kana": "ヤマダ", "address": "仙台市", "birth_date": "2000-04-01", "sex": "2"},
    ],
)
def test_v7_accepts(criteria: dict[str, Any]) -> None:
    assert validate_search(criteria) == []


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"name_kanji": "山田太郎"}, {("V-7", None)}),
        ({"name_kanji": "山田太郎", "sex": "1"}, {("V-7", None)}),  # sex does not count
        ({"address": "仙台市", "birth_date": "2000-04-01"}, {("V-7", "name")}),
        ({"name_kanji": "  ", "address": "仙台市"}, {("V-7", "name")}),
        ({"name_kanji": "山田", "address": "", "birth_date": None}, {("V-7", None)}),
        ({"name_kanji": "山田", "birth_date": "2000-13-01"}, {("V-1", "birth_date")}),
        ({"name_kana": "山田", "address": "仙台市"}, {("V-1", "name_kana")}),
        ({"name_kanji": "山田", "address": "仙台市", "sex": "x"}, {("V-1", "sex")}),
        (
            {"name_kanji": "山田", "address": "仙台市", "individual_number": NUMBER},
            {("V-7", "individual_number")},
        ),
    ],
)
def test_v7_refuses(criteria: dict[str, Any], expected: set[tuple[str, str | None]]) -> None:
    assert rules(validate_search(criteria)) == expected


# --- properties --------------------------------------------------------------------------------

KANA = (
    "アイウエオカキクケコガギグゲゴサシスセソタチツテトダデド"
    "ナニヌネノハヒフヘホバパマミムメモヤユヨラリルレロワン"
)
KANJI = "山田川本中村佐藤鈴木高橋渡辺伊小林加吉松井上清水森池野口髙﨑"

names_kanji = st.text(st.sampled_from(KANJI), min_size=1, max_size=8)
names_kana = st.text(st.sampled_from(KANA), min_size=1, max_size=10)
births = st.dates(min_value=date(1900, 1, 1), max_value=date(2020, 12, 31))


@st.composite
def residents(draw: st.DrawFn) -> IdentityRecord:
    rng = random.Random(draw(st.integers(0, 2**32)))
    birth = draw(births)
    raw = birth_raw(
        resident_code=random_resident_code(rng),
        name_kanji=draw(names_kanji),
        name_kana=draw(names_kana),
        birth_date=birth.isoformat(),
        change_date=birth.isoformat(),
        became_resident_on=birth.isoformat(),
        address_set_on=birth.isoformat(),
        notified_on=birth.isoformat(),
        sex=draw(st.sampled_from(["1", "2", "9"])),
        sequence=draw(st.integers(1, 10**9)),
    )
    record = accept(raw, None)
    if draw(st.booleans()):
        number = random_individual_number(rng)
        record = accept(next_raw(record, R.NUMBER_ASSIGNMENT, individual_number=number), record)
    return record


NON_ADDRESS = sorted(
    {"name_kanji", "name_kana", "birth_date", "sex", "relationship", "municipality_code"}
)
ALTERNATIVES: dict[str, Any] = {
    "name_kanji": "別名",
    "name_kana": "ベツメイ",
    "birth_date": "1899-01-01",
    "sex": None,  # computed: another sex
    "relationship": "同居人",
    "municipality_code": ISHINOMAKI,
}


@settings(max_examples=40, deadline=None)
@given(residents(), st.sampled_from(NON_ADDRESS))
def test_prop_move_within_refuses_any_non_address_change(
    current: IdentityRecord, name: str
) -> None:
    raw = next_raw(current, R.MOVE_WITHIN, **VALID_CASES[R.MOVE_WITHIN][1])
    value = ALTERNATIVES[name]
    if name == "sex":
        value = "2" if current.sex is Sex.MALE else "1"
    found = refuse(raw | {name: value}, current)
    assert ("V-3", name) in found
    accept(raw, current)  # the neighbour: the same 転居 without it


@settings(max_examples=40, deadline=None)
@given(
    residents(),
    st.fixed_dictionaries(
        {},
        optional={
            "postcode": st.text("0123456789", min_size=7, max_size=7),
            "oaza_code": st.text("0123456789", min_size=1, max_size=12),
            "notified_on": st.just("2024-05-21"),
            "change_reason_detail": st.just("同一区内"),
        },
    ),
)
def test_prop_move_within_accepts_any_address_items(
    current: IdentityRecord, extra: dict[str, Any]
) -> None:
    raw = next_raw(current, R.MOVE_WITHIN, **VALID_CASES[R.MOVE_WITHIN][1]) | extra
    after = accept(raw, current)
    assert after.name_kanji == current.name_kanji
    assert after.individual_number == current.individual_number
    for key, value in extra.items():
        got = getattr(after, key)
        assert (got.isoformat() if isinstance(got, date) else got) == value


@settings(max_examples=40, deadline=None)
@given(residents(), st.integers(-5, 5))
def test_prop_sequence_order(current: IdentityRecord, delta: int) -> None:
    raw = next_raw(current, R.DEATH, sequence=current.sequence + delta)
    if delta > 0:
        assert accept(raw, current).sequence == current.sequence + delta
    elif current.sequence + delta < 1:
        assert ("V-1", "sequence") in refuse(raw, current)  # not even a 更新順番号
    else:
        assert ("V-13", "sequence") in refuse(raw, current)


@settings(max_examples=40, deadline=None)
@given(residents(), st.text(min_size=1, max_size=20).filter(lambda k: k not in UPDATE_WHITELIST))
def test_prop_unknown_keys_are_v5(current: IdentityRecord, key: str) -> None:
    raw = next_raw(current, R.DEATH)
    assert ("V-5", key) in refuse(raw | {key: 1}, current)


@settings(max_examples=40, deadline=None)
@given(
    residents(), st.sampled_from([R.MOVE_IN, R.MOVE_IN_FROM_ABROAD, R.ENTRY_BY_AUTHORITY, R.BIRTH])
)
def test_prop_creating_reasons_refuse_a_current_resident(
    current: IdentityRecord, reason: ChangeReason
) -> None:
    raw = valid_raw(reason, current) if reason is not R.BIRTH else birth_raw()
    raw |= {"resident_code": current.resident_code, "sequence": current.sequence + 1}
    assert "V-2" in {rule for rule, _ in refuse(raw, current)}
    if reason is not R.BIRTH:
        gone = removed(current)
        accept(raw | {"sequence": gone.sequence + 1}, gone)


@settings(max_examples=40, deadline=None)
@given(residents())
def test_prop_applied_record_is_complete_and_consistent(current: IdentityRecord) -> None:
    assert set(IDENTITY_FIELDS) == {f for f in IDENTITY_FIELDS if hasattr(current, f)}
    assert current.name_kana_seion == to_seion(current.name_kana)
    assert current.gaiji_flag == (current.name_gaiji_count > 0)


def test_the_forbidden_characters_are_exactly_the_control_surrogate_and_private_use_ones() -> None:
    import sys
    import unicodedata

    from store.validation import _FORBIDDEN_CHARS

    wrong = [
        hex(cp)
        for cp in range(sys.maxunicode + 1)
        if bool(_FORBIDDEN_CHARS.search(chr(cp)))
        != (unicodedata.category(chr(cp)) in ("Cc", "Cs", "Co"))
    ]
    assert wrong == []
