"""４情報検索: V-7 refusals, matching semantics and index use, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import peewee
import pytest

from store import identity
from store.db import RuleViolation, is_postgresql
from store.records import RecordStatus, Sex, provided_from
from store.search import MAX_LIMIT, explain_search, search_4info, search_provided
from tests.store.conftest import MakeIdentity

ADDRESS = "宮城県仙台市青葉区国分町三丁目７番１号"


@pytest.mark.parametrize(
    "criteria",
    [
        {"name": "山田"},
        {"name_kana": "やまだ"},
        {"address": ADDRESS, "birth_date": date(1980, 4, 1)},
        {"address": ADDRESS, "sex": Sex.MALE},
        {"birth_date": date(1980, 4, 1), "sex": Sex.MALE},
        {"name": "山田", "sex": Sex.MALE},
        {"name": "  ", "address": ADDRESS},
        {"name": "山田", "address": "　"},
        {"name_kana": "・　", "address": ADDRESS},  # nothing left after 清音化
        {},
    ],
    ids=lambda c: "+".join(c) or "nothing",
)
def test_v7_refuses_searches_without_name_plus_address_or_birth_date(
    db: peewee.Database, criteria: dict
) -> None:
    with pytest.raises(RuleViolation) as info:
        search_4info(**criteria)
    assert info.value.rule == "V-7"
    with pytest.raises(RuleViolation):
        search_provided("national", **criteria)


@pytest.fixture
def people(db: peewee.Database, make_identity: MakeIdentity) -> dict[str, object]:
    everyone = {
        "taro": make_identity(),
        "yamata": make_identity(
            name_kanji="山田　花子", name_kana="ヤマタ　ハナコ", sex=Sex.FEMALE
        ),
        "ishinomaki": make_identity(
            name_kanji="山田　次郎",
            name_kana="ヤマダ　ジロウ",
            address="宮城県石巻市穀町１４番１号",
            birth_date=date(1975, 1, 1),
        ),
        "other_day": make_identity(name_kanji="山田　三郎", birth_date=date(1980, 4, 2)),
        "middle": make_identity(name_kanji="小山田　一", name_kana="オヤマダ　ハジメ"),
        "removed": make_identity(record_status=RecordStatus.REMOVED),
        "percent": make_identity(name_kanji="山%", name_kana="ヤ_"),
    }
    for record in everyone.values():
        identity.save_record(record)
    return everyone


def _codes(records: list) -> set[str]:
    return {r.resident_code for r in records}


def test_kanji_prefix_with_birth_date(people: dict) -> None:
    found = search_4info(name="山田", birth_date=date(1980, 4, 1))
    assert _codes(found) == _codes([people["taro"], people["yamata"]])


def test_kana_is_normalised_to_seion_before_matching(people: dict) -> None:
    # ひらがな with dakuten finds the stored katakana, and ダ/タ fold together (清音化).
    found = search_4info(name_kana="やまだ　", address="宮城県仙台市")
    assert _codes(found) == _codes([people["taro"], people["yamata"], people["other_day"]])


def test_name_must_match_from_the_start(people: dict) -> None:
    assert search_4info(name="田", address="宮城県") == []
    found = search_4info(name_kana="オヤマ", address="宮城県")
    assert _codes(found) == {people["middle"].resident_code}


def test_address_is_a_prefix_and_birth_date_exact(people: dict) -> None:
    found = search_4info(name="山田", address="宮城県石巻市")
    assert _codes(found) == {people["ishinomaki"].resident_code}
    assert search_4info(name="山田", address="石巻市") == []
    found = search_4info(name="山田", birth_date=date(1980, 4, 2))
    assert _codes(found) == {people["other_day"].resident_code}


def test_sex_narrows_an_allowed_search(people: dict) -> None:
    found = search_4info(name="山田", birth_date=date(1980, 4, 1), sex=Sex.FEMALE)
    assert _codes(found) == {people["yamata"].resident_code}


def test_kanji_and_kana_together_must_both_match(people: dict) -> None:
    found = search_4info(name="山田　次", name_kana="ヤマタ", address="宮城県")
    assert _codes(found) == {people["ishinomaki"].resident_code}


def test_removed_persons_only_on_request(people: dict) -> None:
    plain = search_4info(name="山田　太郎", birth_date=date(1980, 4, 1))
    assert _codes(plain) == {people["taro"].resident_code}
    with_removed = search_4info(
        name="山田　太郎", birth_date=date(1980, 4, 1), include_removed=True
    )
    assert _codes(with_removed) == _codes([people["taro"], people["removed"]])


def test_wildcards_in_the_input_are_literal(people: dict) -> None:
    assert _codes(search_4info(name="山%", address="宮城県")) == {people["percent"].resident_code}
    assert search_4info(name="%", address="宮城県") == []
    assert _codes(search_4info(name_kana="ヤ_", address="宮城県")) == {
        people["percent"].resident_code
    }


def test_results_are_full_records_in_a_stable_order(people: dict) -> None:
    found = search_4info(name_kana="ヤマ", address="宮城県")
    assert found == sorted(found, key=lambda r: (r.name_kana_seion, r.resident_code))
    by_code = {r.resident_code: r for r in people.values()}
    assert all(by_code[r.resident_code] == r for r in found)


def test_limit(people: dict) -> None:
    assert len(search_4info(name="山田", address="宮城県", limit=2)) == 2
    with pytest.raises(ValueError):
        search_4info(name="山田", address="宮城県", limit=MAX_LIMIT + 1)


@pytest.mark.parametrize("tier", identity.TIERS)
def test_search_provided_copies(db: peewee.Database, make_identity: MakeIdentity, tier) -> None:
    record = make_identity()
    identity.save_provided(tier, provided_from(record))
    found = search_provided(tier, name_kana="ヤマダ", birth_date=record.birth_date)
    assert found == [provided_from(record)]
    assert search_4info(name_kana="ヤマダ", birth_date=record.birth_date) == []


SEARCHES = [  # criteria, the index SQLite must drive by (the most selective condition)
    ({"name": "山田", "birth_date": date(1980, 4, 1)}, "birth_date"),
    ({"name_kana": "ヤマダ", "address": "宮城県仙台市"}, "name_kana_seion_prefix"),
    ({"name": "山田", "address": "宮城県仙台市"}, "name_kanji_prefix"),
    ({"name": "山田", "name_kana": "ヤマダ", "address": "宮城県"}, "name_kanji_prefix"),
    ({"name_kana": "ヤマダ", "birth_date": date(1980, 4, 1), "sex": Sex.MALE}, "birth_date"),
]


@pytest.mark.parametrize(("criteria", "driver"), SEARCHES, ids=["+".join(c) for c, _ in SEARCHES])
@pytest.mark.parametrize("tier", [None, *identity.TIERS])
def test_searches_use_an_index(
    db: peewee.Database, make_identity: MakeIdentity, criteria: dict, driver: str, tier
) -> None:
    # A few hundred rows and ANALYZE, so the planner has statistics to choose from.
    identity.bulk_load_identities(
        [make_identity(birth_date=date(1950 + i % 50, 1 + i % 12, 1 + i % 28)) for i in range(300)]
    )
    if is_postgresql(db):
        # A tiny table is cheapest to scan; forbid that to prove the indexes can serve the
        # query at all (text_pattern_ops for the LIKE prefixes).
        db.execute_sql("SET enable_seqscan = off")
        plan = "\n".join(explain_search(tier, **criteria))
        db.execute_sql("SET enable_seqscan = on")
        assert "Index" in plan and "Seq Scan" not in plan, plan
    else:
        plan = "\n".join(explain_search(tier, **criteria))
        # SEARCH = an index seek; SCAN (even "SCAN ... USING INDEX") would read the whole table.
        assert "SEARCH" in plan and "USING" in plan and "INDEX" in plan, plan
        assert "SCAN" not in plan, plan
        index = {"birth_date": "birth_date_name_kana_seion_name_kanji"}.get(driver, driver)
        assert f"_{index} (" in plan, plan
