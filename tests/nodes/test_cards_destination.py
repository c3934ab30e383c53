"""送付先情報 built by the registry (CS-7 input): all 67 items, derived items, 外字 handling."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.messages import DESTINATION
from nodes.registry_cards import destination_for, notify_destination, substitute
from store.records import DESTINATION_FIELDS, destination_from_dict

PERSON: dict[str, Any] = {
    "resident_code": "12345678903",
    "name_kanji": "青葉\u3000花子",
    "name_kana": "アオバ\u3000ハナコ",
    "birth_date": "1990-04-01",
    "sex": "2",
    "municipality_code": "041009",
    "postcode": "9800803",
    "address": "宮城県仙台市青葉区国分町二丁目3番4号",
    "individual_number": "123456789018",
}


def build(person: dict[str, Any] = PERSON) -> dict[str, Any]:
    return destination_for(
        person,
        "041009",
        municipality_name="仙台市",
        management_number="D041009-7",
        processed_on=date(2025, 4, 1),
    )


def test_all_67_items_in_seed_order_and_the_record_type_reads_them() -> None:
    record = build()
    assert list(record) == list(DESTINATION_FIELDS) and len(record) == 67
    DESTINATION.validate(record, "record")  # what the wire accepts
    parsed = destination_from_dict(record)
    assert parsed.resident_code == "12345678903"
    assert parsed.individual_number == "123456789018"
    assert parsed.birth_date == date(1990, 4, 1)


def test_the_person_and_office_items() -> None:
    r = build()
    assert (r["destination_id"], r["municipality_code"], r["municipality_name"]) == (
        "D041009-7",
        "041009",
        "仙台市",
    )
    # addressed to the person at the registered address
    assert (r["destination_name"], r["destination_address"], r["destination_postcode"]) == (
        "青葉\u3000花子",
        "宮城県仙台市青葉区国分町二丁目3番4号",
        "9800803",
    )
    assert (r["name_kanji"], r["name_kana"], r["address"], r["postcode"]) == (
        "青葉\u3000花子",
        "アオバ\u3000ハナコ",
        "宮城県仙台市青葉区国分町二丁目3番4号",
        "9800803",
    )
    assert (r["birth_date"], r["sex"], r["processed_on"], r["persons_count"]) == (
        "1990-04-01",
        "2",
        "2025-04-01",
        1,
    )
    assert r["municipality_address"] == "宮城県仙台市青葉区国分町三丁目7番1号"  # 仙台市役所
    assert r["pickup_place_postcode"] == r["delivery_place_postcode"] == "9808671"
    # lengths are character counts of their items
    assert r["name_kanji_length"] == 5 and r["name_kana_length"] == 7
    assert r["address_length"] == len("宮城県仙台市青葉区国分町二丁目3番4号")
    assert r["municipality_name_length"] == 3
    # no 外字: nothing substituted
    assert (r["gaiji_flag"], r["name_gaiji_count"], r["substitute_name"]) == (False, 0, None)
    assert r["substitute_conversion_result"] == "0" and r["substitute_name_length"] == 0


def test_gaiji_names_get_substitutes_and_positions() -> None:
    person = {**PERSON, "name_kanji": "𠮷田\u3000葛\U000e0100子"}  # U+20BB7 and an IVS
    r = build(person)
    assert r["name_gaiji_count"] == 2 and r["destination_name_gaiji_count"] == 2
    assert r["gaiji_flag"] is True
    assert r["substitute_name"] == "〓田\u3000〓子"
    assert r["substitute_name_positions"] == "1,4"
    assert r["substitute_name_length"] == 5
    assert r["substitute_conversion_result"] == "1"
    assert r["substitute_address"] is None  # the address had none
    assert r["name_kanji_length"] == len(person["name_kanji"])
    DESTINATION.validate(r, "record")


def test_former_surname_and_roman_items_come_from_the_register() -> None:
    person = {
        **PERSON,
        "former_surname_kanji": "髙橋",  # 髙 is outside JIS X 0208
        "former_surname_kana": "タカハシ",
        "name_roman": "AOBA HANAKO",
    }
    r = build(person)
    assert (r["former_surname_kanji"], r["former_surname_kana"], r["name_roman"]) == (
        "髙橋",
        "タカハシ",
        "AOBA HANAKO",
    )
    assert r["former_surname_gaiji_count"] == 1 and r["gaiji_flag"] is True


def test_no_record_without_a_number() -> None:
    with pytest.raises(ValueError):
        build({**PERSON, "individual_number": None})


def test_notify_sends_the_built_record_to_the_cs() -> None:
    sent: list[tuple[str, str, dict[str, Any]]] = []
    record = notify_destination(
        lambda to, t, b: sent.append((to, t, b)),
        "cs.041009",
        PERSON,
        "041009",
        municipality_name="仙台市",
        sequence=42,
        on=date(2025, 4, 1),
    )
    assert sent == [("cs.041009", "cs.registry.destination", {"record": record})]
    assert record["destination_id"] == "D041009-42"


PIECES = ["山", "田", "𠮷", "髙", "\u3000", "a", "1", "ア", "葛\U000e0100", "辻\U000e0101"]
TEXT = st.lists(st.sampled_from(PIECES), min_size=1, max_size=12).map("".join)


@settings(max_examples=150, deadline=None)
@given(TEXT)
def test_substitute_replaces_exactly_the_gaiji(text: str) -> None:
    from store.kana import count_gaiji

    out, positions = substitute(text)
    if count_gaiji(text) == 0:
        assert (out, positions) == (None, None)
        return
    assert out is not None and positions is not None
    marked = [int(p) for p in positions.split(",")]
    assert len(marked) == count_gaiji(text)
    assert [i + 1 for i, ch in enumerate(out) if ch == "〓"] == marked
    # the standard characters survive in order
    kept = [ch for ch in out if ch != "〓"]
    assert kept == [ch for ch in text if ch in "山田\u3000a1ア"]


@settings(max_examples=100, deadline=None)
@given(TEXT, TEXT)
def test_any_name_and_address_give_a_record_the_wire_accepts(name: str, street: str) -> None:
    from store.records import destination_lengths

    record = build({**PERSON, "name_kanji": name, "address": "仙台市" + street})
    DESTINATION.validate(record, "record")
    destination_from_dict(record)
    assert all(record[k] == v for k, v in destination_lengths(record).items())
    assert record["name_kanji_length"] == len(name)
