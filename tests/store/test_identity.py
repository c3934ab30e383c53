"""The identity API over every model, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import peewee
import pytest

from store import identity
from store.db import DuplicateKey, IntegrityViolation, open_database
from store.models import (
    DestinationRow,
    IdentityHistoryRow,
    IdentityRow,
    IssuedNumberRow,
    PendingMoveOutRow,
    ResidentCodeRow,
)
from store.records import (
    IDENTITY_FIELDS,
    ChangeReason,
    DestinationRecord,
    IdentityRecord,
    RecordStatus,
    Sex,
    destination_from_dict,
    destination_to_dict,
    provided_from,
    replace,
)
from store.schema import init_store
from tests.store.conftest import MakeIdentity, full_identity

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def test_full_identity_sets_every_item_away_from_its_default(make_identity: MakeIdentity) -> None:
    record = full_identity(make_identity)
    for f in dataclasses.fields(IdentityRecord):
        if f.default is not dataclasses.MISSING:
            assert getattr(record, f.name) != f.default, f.name


def test_all_40_items_round_trip(db: peewee.Database, make_identity: MakeIdentity) -> None:
    full = full_identity(make_identity)
    sparse = make_identity()
    identity.save_record(full)
    identity.save_record(sparse)
    assert identity.get_by_resident_code(full.resident_code) == full
    assert identity.get_by_resident_code(sparse.resident_code) == sparse
    got = identity.get_by_resident_code(full.resident_code)
    assert got is not None
    assert type(got.birth_date) is date and got.timestamp.tzinfo is not None
    assert got.sex is Sex.FEMALE and got.record_status is RecordStatus.REMOVED
    assert got.update_prohibited is True
    assert identity.get_by_resident_code("00000000000") is None


def test_row_columns_are_the_record_fields(db: peewee.Database) -> None:
    assert set(IDENTITY_FIELDS) <= set(IdentityRow._meta.fields)
    assert set(IDENTITY_FIELDS) <= set(IdentityHistoryRow._meta.fields)


def test_naive_timestamp_is_refused(db: peewee.Database, make_identity: MakeIdentity) -> None:
    with pytest.raises(ValueError):
        identity.save_record(make_identity(timestamp=datetime(2024, 1, 1)))


def test_get_by_individual_number_prefers_the_current_record(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    removed = make_identity(individual_number="123456789018", record_status=RecordStatus.REMOVED)
    current = make_identity(individual_number="123456789018")
    identity.save_record(current)
    identity.save_record(removed)
    assert identity.get_by_individual_number("123456789018") == current
    assert identity.get_by_individual_number("999999999999") is None


def test_history_numbers_versions_per_person(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    v1 = make_identity()
    v2 = replace(
        v1, address="宮城県仙台市青葉区一番町一丁目", change_reason=ChangeReason.MOVE_WITHIN
    )
    v3 = replace(v2, sequence=3, record_status=RecordStatus.REMOVED)
    other = make_identity()
    assert [identity.save_record(v) for v in (v1, v2, v3)] == [1, 2, 3]
    assert identity.save_record(other) == 1
    assert identity.history(v1.resident_code) == [(1, v1), (2, v2), (3, v3)]
    assert identity.get_by_resident_code(v1.resident_code) == v3
    assert identity.history(other.resident_code) == [(1, other)]
    assert identity.history("00000000000") == []


def test_save_without_history_writes_no_snapshot(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    record = make_identity()
    assert identity.save_record(record, history=False) is None
    assert identity.history(record.resident_code) == []
    assert identity.get_by_resident_code(record.resident_code) == record


def test_history_recorded_at_defaults_to_the_record_timestamp(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    record = make_identity()
    identity.save_record(record)
    identity.save_record(replace(record, sequence=2), recorded_at=T0)
    stamps = [
        row.recorded_at
        for row in IdentityHistoryRow.select().order_by(IdentityHistoryRow.history_no)
    ]
    assert stamps == [record.timestamp, T0]


def test_history_number_is_unique_per_person(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    record = make_identity()
    identity.save_record(record)
    values = {name: getattr(record, name) for name in IDENTITY_FIELDS}
    with pytest.raises(peewee.IntegrityError), db.atomic():
        IdentityHistoryRow.insert(**values, history_no=1, recorded_at=T0).execute()


def test_save_joins_the_callers_transaction(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    record = make_identity()
    with pytest.raises(RuntimeError), db.atomic():
        identity.save_record(record)
        assert identity.get_by_resident_code(record.resident_code) == record
        raise RuntimeError("handler failed after writing")
    assert identity.get_by_resident_code(record.resident_code) is None
    assert identity.history(record.resident_code) == []


def test_resident_code_change_moves_the_current_row(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    old = make_identity(individual_number="123456789018")
    identity.save_record(old)
    new = replace(
        old,
        resident_code="11111111119",
        old_resident_code=old.resident_code,
        change_reason=ChangeReason.RESIDENT_CODE_CHANGE,
        sequence=2,
    )
    assert identity.save_record(new) == 1
    assert identity.get_by_resident_code(old.resident_code) is None
    assert identity.get_by_resident_code(new.resident_code) == new
    assert identity.get_by_individual_number("123456789018") == new
    assert identity.history(old.resident_code) == [(1, old)]
    assert identity.count_identities() == 1


@pytest.mark.parametrize("tier", identity.TIERS)
def test_provided_copies_round_trip_with_history(
    db: peewee.Database, make_identity: MakeIdentity, tier: identity.Tier
) -> None:
    first = provided_from(full_identity(make_identity))
    second = replace(first, address="宮城県石巻市大街道東", sequence=first.sequence + 1)
    assert identity.save_provided(tier, first, recorded_at=T0) == 1
    assert identity.save_provided(tier, second) == 2
    assert identity.get_provided(tier, first.resident_code) == second
    assert identity.provided_history(tier, first.resident_code) == [(1, first), (2, second)]
    assert identity.get_provided_by_individual_number(tier, "123456789018") == second
    other = "national" if tier == "prefecture" else "prefecture"
    assert identity.get_provided(other, first.resident_code) is None
    assert identity.get_by_resident_code(first.resident_code) is None


def test_unknown_tier_is_refused(db: peewee.Database) -> None:
    with pytest.raises(ValueError, match="tier"):
        identity.get_provided("city", "12345678901")  # type: ignore[arg-type]


def test_bulk_load_round_trips_and_rebuilds_indexes(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    indexes_before = {i.name for i in db.get_indexes("identity")}
    records = [make_identity(sequence=i, municipality_code="041009") for i in range(250)]
    records[7] = full_identity(make_identity)
    assert identity.bulk_load_identities(records, batch=64) == 250
    assert {i.name for i in db.get_indexes("identity")} == indexes_before
    assert identity.count_identities() == 250
    assert identity.get_by_resident_code(records[7].resident_code) == records[7]
    assert sorted(identity.iter_identities(), key=lambda r: r.sequence) == sorted(
        records, key=lambda r: r.sequence
    )
    assert identity.history(records[0].resident_code) == []


def test_bulk_load_keeps_awkward_text_exactly(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    # PostgreSQL loads through COPY's text format, where these characters are escapes.
    awkward = make_identity(
        name_kanji="山田\t太郎",
        address="宮城県\\N\n仙台市\r\\",
        relationship="\\N",
        change_reason_detail="",
        previous_address=None,
    )
    identity.bulk_load_identities([awkward, make_identity()])
    assert identity.get_by_resident_code(awkward.resident_code) == awkward


@pytest.mark.parametrize("tier", identity.TIERS)
def test_bulk_load_provided(db: peewee.Database, make_identity: MakeIdentity, tier) -> None:
    indexes_before = {i.name for i in db.get_indexes(f"{tier}_identity")}
    records = [provided_from(make_identity(sequence=i)) for i in range(40)]
    assert identity.bulk_load_provided(tier, records, batch=16) == 40
    assert {i.name for i in db.get_indexes(f"{tier}_identity")} == indexes_before
    assert identity.get_provided(tier, records[3].resident_code) == records[3]
    assert identity.provided_history(tier, records[3].resident_code) == []
    with pytest.raises(DuplicateKey):
        identity.bulk_load_provided(tier, [records[0]])
    assert identity.count_identities() == 0


def test_bulk_load_into_a_filled_table_keeps_indexes(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    identity.save_record(make_identity())
    indexes_before = {i.name for i in db.get_indexes("identity")}
    assert identity.bulk_load_identities([make_identity() for _ in range(10)]) == 10
    assert {i.name for i in db.get_indexes("identity")} == indexes_before
    assert identity.count_identities() == 11


def test_bulk_load_with_a_duplicate_changes_nothing(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    indexes_before = {i.name for i in db.get_indexes("identity")}
    first = make_identity()
    records = [first, *(make_identity() for _ in range(20)), replace(first, sequence=9)]
    with pytest.raises(DuplicateKey):
        identity.bulk_load_identities(records, batch=5)
    assert identity.count_identities() == 0
    assert {i.name for i in db.get_indexes("identity")} == indexes_before


def test_iter_identities_streams_in_batches_and_filters(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    sendai = [make_identity(municipality_code="041009", sequence=i) for i in range(23)]
    ishinomaki = [make_identity(municipality_code="042021", sequence=i) for i in range(5)]
    identity.bulk_load_identities(sendai + ishinomaki)
    assert list(identity.iter_identities(batch=4)) == sendai + ishinomaki
    assert list(identity.iter_identities("042021", batch=2)) == ishinomaki
    assert list(identity.iter_identities("131016")) == []
    assert identity.count_identities("041009") == 23
    assert identity.count_identities() == 28


def test_issued_numbers_are_unique(db: peewee.Database) -> None:
    IssuedNumberRow.insert(
        individual_number="123456789018", resident_code="1", issued_at=T0
    ).execute()
    with pytest.raises(peewee.IntegrityError), db.atomic():
        IssuedNumberRow.insert(
            individual_number="123456789018", resident_code="2", issued_at=T0
        ).execute()
    row = IssuedNumberRow.get_by_id("123456789018")
    assert (row.resident_code, row.issued_at) == ("1", T0)


def test_resident_codes_are_unique(db: peewee.Database) -> None:
    ResidentCodeRow.insert(code="12345678901", status="offered", updated_at=T0).execute()
    with pytest.raises(peewee.IntegrityError), db.atomic():
        ResidentCodeRow.insert(code="12345678901", status="assigned", updated_at=T0).execute()
    assert ResidentCodeRow.get_by_id("12345678901").status == "offered"


def test_unique_resident_code_in_the_current_table(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    record = make_identity()
    values = {name: getattr(record, name) for name in IDENTITY_FIELDS}
    IdentityRow.insert(**values).execute()
    with pytest.raises(peewee.IntegrityError), db.atomic():
        IdentityRow.insert(**values).execute()


def test_destination_is_kept_unedited(db: peewee.Database) -> None:
    record = DestinationRecord(
        destination_id="D-000001",
        municipality_code="041009",
        municipality_name="仙台市",
        processed_on=date(2024, 6, 3),
        resident_code="12345678901",
        name_kanji="山田　太郎",
        name_kana="ヤマダ　タロウ",
        address="宮城県仙台市青葉区国分町三丁目７番１号",
        birth_date=date(1980, 4, 1),
        sex=Sex.MALE,
        individual_number="123456789018",
        gaiji_pattern=b"\x00\xff\x10glyph",
        name_roman="YAMADA TARO",
    )
    DestinationRow.insert(
        management_number=record.destination_id,
        resident_code=record.resident_code,
        content=destination_to_dict(record),
        received_at=T0,
    ).execute()
    row = DestinationRow.get(DestinationRow.management_number == "D-000001")
    assert destination_from_dict(row.content) == record
    assert row.sent_at is None and row.received_at == T0
    with pytest.raises(peewee.IntegrityError), db.atomic():
        DestinationRow.insert(
            management_number="D-000001", resident_code="1", content={}, received_at=T0
        ).execute()


def test_pending_move_out_content_round_trips(db: peewee.Database) -> None:
    content = {"resident_code": "12345678901", "to": "131016", "photo": b"\x01\x02", "n": [1, 2]}
    PendingMoveOutRow.insert(
        resident_code="12345678901", from_municipality="041009", content=content, received_at=T0
    ).execute()
    row = PendingMoveOutRow.get()
    assert (row.content, row.status, row.received_at) == (content, "pending", T0)


def test_not_null_violation_is_an_integrity_violation(db: peewee.Database) -> None:
    from store.db import translate_errors

    with pytest.raises(IntegrityViolation), translate_errors(), db.atomic():
        PendingMoveOutRow.insert(
            resident_code="1", from_municipality=None, content={}, received_at=T0
        ).execute()


def test_sqlite_bulk_load_gives_its_page_cache_back(
    tmp_path: Path, make_identity: MakeIdentity
) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'cs.db'}")
    try:
        init_store(db, "municipal_cs")
        identity.bulk_load_identities([make_identity() for _ in range(5)])
        assert db.execute_sql("PRAGMA cache_size").fetchone()[0] == -65_536
    finally:
        db.close()


def _changed(record: IdentityRecord, n: int) -> IdentityRecord:
    """The record after a 転居 and a correction: a few items differ, most do not."""
    return dataclasses.replace(
        record,
        address=f"宮城県仙台市若林区荒町{n}番1号",
        address_set_on=date(2026, 11, n % 28 + 1),
        sequence=record.sequence + n,
        name_kanji=record.name_kanji if n % 2 else "改名\u3000花子",
        individual_number=None if n % 3 == 0 else record.individual_number,
        timestamp=datetime(2026, 11, 20, 9, n % 60, tzinfo=UTC),
    )


def test_saving_against_the_previous_row_writes_the_same_as_a_whole_row(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    # the CS passes the row it read; only the differing columns are written
    for n in range(1, 7):
        before = full_identity(make_identity)
        identity.save_record(before)
        after = _changed(before, n)
        assert identity.save_record(after, previous=before) == 2
        assert identity.get_by_resident_code(before.resident_code) == after
        assert [r for _, r in identity.history(before.resident_code)] == [before, after]
    # the tiers the same way
    person = full_identity(make_identity)
    old, new = provided_from(person), provided_from(_changed(person, 5))
    identity.save_provided("national", old)
    identity.save_provided("national", new, previous=old)
    assert identity.get_provided("national", person.resident_code) == new


def test_a_previous_row_that_is_not_there_falls_back_to_the_whole_row(
    db: peewee.Database, make_identity: MakeIdentity
) -> None:
    ghost = full_identity(make_identity)  # "read" by the caller, but never stored
    after = _changed(ghost, 4)
    identity.save_record(after, previous=ghost)
    assert identity.get_by_resident_code(ghost.resident_code) == after
    # and an unchanged record writes nothing to the current row but still its history snapshot
    assert identity.save_record(after, previous=after) == 2
    assert identity.get_by_resident_code(ghost.resident_code) == after
