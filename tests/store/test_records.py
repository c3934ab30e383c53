"""本人確認情報・送付先情報: record shapes, item numbering and the plain-dict round trip."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.records import (
    DESTINATION_FIELDS,
    DESTINATION_ITEM_NUMBERS,
    IDENTITY_FIELDS,
    IDENTITY_ITEM_NUMBERS,
    PROVIDED_FIELDS,
    UPDATE_WHITELIST,
    ChangeReason,
    DestinationRecord,
    IdentityRecord,
    IdentityUpdate,
    ProvidedIdentity,
    RecordStatus,
    Sex,
    destination_from_dict,
    destination_lengths,
    destination_to_dict,
    lookup_code,
    provided_from,
    provided_from_dict,
    provided_to_dict,
    record_from_dict,
    record_to_dict,
    update_to_dict,
)

SEED_IDENTITY_ITEMS = {
    1: "resident_code",
    2: "name_kanji",
    5: "name_kana_seion",
    13: "individual_number",
    21: "change_reason",
    29: "sequence",
    30: "recovery_sequence",
    35: "record_status",
    36: "timestamp",
    40: "former_surname_gaiji_serial",
}


def make_record(**overrides: object) -> IdentityRecord:
    values: dict[str, object] = {
        "resident_code": "12345678903",
        "name_kanji": "山田太郎",
        "name_kana": "ヤマダ タロウ",
        "name_kana_seion": "ヤマタタロウ",
        "birth_date": date(1980, 1, 2),
        "sex": Sex.MALE,
        "municipality_code": "041009",
        "address": "宮城県仙台市青葉区国分町三丁目7番1号",
        "change_reason": ChangeReason.BIRTH,
        "change_date": date(1980, 1, 2),
        "sequence": 1,
        "timestamp": datetime(2024, 4, 1, 9, 0, tzinfo=UTC),
    }
    values.update(overrides)
    return IdentityRecord(**values)  # type: ignore[arg-type]


def test_identity_record_has_the_40_seed_items_in_order() -> None:
    assert len(IDENTITY_FIELDS) == 40
    assert len(set(IDENTITY_FIELDS)) == 40
    for number, name in SEED_IDENTITY_ITEMS.items():
        assert IDENTITY_ITEM_NUMBERS[name] == number
        assert IDENTITY_FIELDS[number - 1] == name


def test_destination_record_has_the_67_seed_items() -> None:
    assert len(DESTINATION_FIELDS) == 67
    assert DESTINATION_ITEM_NUMBERS["destination_id"] == 1
    assert DESTINATION_ITEM_NUMBERS["resident_code"] == 38
    assert DESTINATION_ITEM_NUMBERS["individual_number"] == 50
    assert DESTINATION_ITEM_NUMBERS["former_surname_roman"] == 67


def test_records_are_frozen() -> None:
    record = make_record()
    with pytest.raises(AttributeError):
        record.name_kanji = "別人"  # type: ignore[misc]


def test_provided_identity_carries_the_eight_items_and_nothing_local() -> None:
    record = make_record(
        individual_number="123456789018",
        operator_id="op-1",
        terminal_id="t-1",
        relationship="世帯主",
    )
    provided = provided_from(record)
    for name in (
        "resident_code",
        "name_kanji",
        "birth_date",
        "sex",
        "address",
        "individual_number",
        "change_reason",
        "change_date",
    ):
        assert getattr(provided, name) == getattr(record, name)
    # operator, terminal and household data stay in the CS
    assert not {"operator_id", "terminal_id", "relationship", "postcode"} & set(PROVIDED_FIELDS)


def test_record_dict_is_plain_and_iso() -> None:
    d = record_to_dict(make_record())
    assert d["birth_date"] == "1980-01-02"
    assert d["sex"] == "1"
    assert d["change_reason"] == "出生"
    assert d["record_status"] == "現存"
    assert d["timestamp"] == "2024-04-01T09:00:00+00:00"
    assert all(isinstance(v, str | int | bool | type(None)) for v in d.values())


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError):
        record_to_dict(make_record(timestamp=datetime(2024, 1, 1)))


def test_timestamp_in_another_zone_comes_back_as_utc() -> None:
    jst = timezone(timedelta(hours=9))
    d = record_to_dict(make_record(timestamp=datetime(2024, 4, 1, 18, 0, tzinfo=jst)))
    assert record_from_dict(d).timestamp == datetime(2024, 4, 1, 9, 0, tzinfo=UTC)


def test_unknown_key_is_refused() -> None:
    d = record_to_dict(make_record())
    d["favourite_colour"] = "blue"
    with pytest.raises(ValueError, match="favourite_colour"):
        record_from_dict(d)


def test_lookup_code_uses_old_code_for_a_code_change() -> None:
    assert lookup_code({"change_reason": "転居", "resident_code": "1"}) == "1"
    raw = {"change_reason": "住民票コード変更", "resident_code": "2", "old_resident_code": "1"}
    assert lookup_code(raw) == "1"


def test_update_whitelist_excludes_cs_managed_items() -> None:
    cs_managed = {
        "name_kana_seion",
        "name_gaiji_count",
        "address_gaiji_count",
        "gaiji_flag",
        "record_status",
        "timestamp",
        "locked",
        "update_prohibited",
        "prospective",
        "operator_id",
        "terminal_id",
    }
    assert not cs_managed & UPDATE_WHITELIST
    assert set(IDENTITY_FIELDS) >= UPDATE_WHITELIST


def test_update_to_dict_is_wire_form() -> None:
    update = IdentityUpdate(
        resident_code="12345678903",
        change_reason=ChangeReason.MOVE_WITHIN,
        change_date=date(2024, 5, 1),
        request_number="R1",
        sequence=7,
        changes={"address": "新住所", "address_set_on": date(2024, 5, 1)},
    )
    assert update_to_dict(update) == {
        "resident_code": "12345678903",
        "change_reason": "転居",
        "change_date": "2024-05-01",
        "request_number": "R1",
        "sequence": 7,
        "address": "新住所",
        "address_set_on": "2024-05-01",
    }
    with pytest.raises(TypeError):
        update.changes["address"] = "x"  # type: ignore[index]


def test_destination_lengths_count_characters() -> None:
    lengths = destination_lengths({"name_kanji": "山田太郎", "address": None})
    assert lengths["name_kanji_length"] == 4
    assert lengths["address_length"] == 0


# --- round-trip properties --------------------------------------------------------------------

texts = st.text(min_size=1, max_size=12)
opt_texts = st.none() | texts
dates = st.dates(min_value=date(1850, 1, 1), max_value=date(2100, 12, 31))
opt_dates = st.none() | dates
counts = st.integers(min_value=0, max_value=99)
utc_times = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)

identity_records = st.builds(
    IdentityRecord,
    resident_code=texts,
    name_kanji=texts,
    name_gaiji_count=counts,
    name_kana=texts,
    name_kana_seion=texts,
    birth_date=dates,
    sex=st.sampled_from(Sex),
    municipality_code=texts,
    oaza_code=opt_texts,
    postcode=opt_texts,
    address=texts,
    address_gaiji_count=counts,
    individual_number=opt_texts,
    became_resident_on=opt_dates,
    address_set_on=opt_dates,
    notified_on=opt_dates,
    previous_municipality_code=opt_texts,
    previous_address=opt_texts,
    previous_address_gaiji_count=counts,
    relationship=opt_texts,
    change_reason=st.sampled_from(ChangeReason),
    change_date=dates,
    change_reason_detail=opt_texts,
    old_resident_code=opt_texts,
    resident_code_since=opt_dates,
    request_number=opt_texts,
    operator_id=opt_texts,
    terminal_id=opt_texts,
    sequence=st.integers(min_value=0, max_value=2**62),
    recovery_sequence=st.none() | st.integers(min_value=0, max_value=2**62),
    update_prohibited=st.booleans(),
    prospective=st.booleans(),
    locked=st.booleans(),
    gaiji_flag=st.booleans(),
    record_status=st.sampled_from(RecordStatus),
    timestamp=utc_times,
    former_surname_kanji=opt_texts,
    former_surname_gaiji_count=counts,
    former_surname_kana=opt_texts,
    former_surname_gaiji_serial=counts,
)


@settings(max_examples=60)
@given(identity_records)
def test_identity_round_trip(record: IdentityRecord) -> None:
    assert record_from_dict(record_to_dict(record)) == record


@settings(max_examples=40)
@given(identity_records)
def test_provided_round_trip(record: IdentityRecord) -> None:
    provided = provided_from(record)
    assert provided_from_dict(provided_to_dict(provided)) == provided
    assert isinstance(provided, ProvidedIdentity)


def _destination_strategy() -> st.SearchStrategy[DestinationRecord]:
    import typing

    hints = typing.get_type_hints(DestinationRecord)
    kinds: dict[object, st.SearchStrategy[object]] = {
        str: texts,
        str | None: opt_texts,
        int: counts,
        bool: st.booleans(),
        date: dates,
        date | None: opt_dates,
        bytes | None: st.none() | st.binary(max_size=16),
        Sex: st.sampled_from(Sex),
    }
    return st.builds(DestinationRecord, **{n: kinds[hints[n]] for n in DESTINATION_FIELDS})


@settings(max_examples=40)
@given(_destination_strategy())
def test_destination_round_trip(record: DestinationRecord) -> None:
    assert destination_from_dict(destination_to_dict(record)) == record


def _reference_dict(record: object) -> dict[str, object]:
    """The plain form by definition: each value encoded by its runtime type, field by field."""
    import dataclasses
    from enum import StrEnum

    def encode(v: object) -> object:
        if isinstance(v, StrEnum):
            return v.value
        if isinstance(v, datetime):
            return v.astimezone(UTC).isoformat()
        if isinstance(v, date):
            return v.isoformat()
        return v

    return {f.name: encode(getattr(record, f.name)) for f in dataclasses.fields(record)}  # type: ignore[arg-type]


@settings(max_examples=40)
@given(identity_records, _destination_strategy())
def test_dict_forms_equal_the_field_by_field_encoding(
    record: IdentityRecord, destination: DestinationRecord
) -> None:
    # the per-class codecs resolve each field's type once; they must agree with the definition
    for obj, to_dict in (
        (record, record_to_dict),
        (provided_from(record), provided_to_dict),
        (destination, destination_to_dict),
    ):
        plain = to_dict(obj)  # type: ignore[operator]
        assert plain == _reference_dict(obj)
        assert all(type(v) in (str, int, bool, float, bytes, type(None)) for v in plain.values())
