"""Store fixtures: every store test runs on SQLite and on the real PostgreSQL.

PostgreSQL: one uniquely named database per test session (dropped at the end), and inside it one
fresh schema per test, selected through the URL's ``options=-c search_path=...`` (which also
exercises driver options passed through `open_database`). Each test therefore starts from an
empty store on both engines, like SQLite's tmp_path file.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import peewee
import psycopg2
import pytest

from store.codes import random_resident_code
from store.db import open_database
from store.kana import to_seion
from store.records import ChangeReason, IdentityRecord, RecordStatus, Sex

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{dbname}"

ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for this session; yields its name."""
    name = f"juki_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(PG_ADMIN_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    try:
        yield name
    finally:
        conn = psycopg2.connect(PG_ADMIN_DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture(params=ENGINES)
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A URL naming an empty store on the parametrized engine."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("store") / "node" / "store.db"
        yield f"sqlite:///{path}"
        return
    dbname = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(PG_ADMIN_DSN.replace("dbname=postgres", f"dbname={dbname}"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    try:
        options = quote(f"-c search_path={schema}")
        yield PG_URL.format(dbname=dbname) + f"?options={options}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


@pytest.fixture
def empty_db(store_url: str) -> Iterator[peewee.Database]:
    """The store database opened and bound, with no tables yet."""
    db = open_database(store_url)
    db.connect()
    try:
        yield db
    finally:
        if db.in_transaction():
            db.rollback()
        db.close()


@pytest.fixture
def db(empty_db: peewee.Database) -> peewee.Database:
    """The store database with every store table created (all roles)."""
    from store.schema import all_models

    empty_db.create_tables(all_models())
    return empty_db


_RNG = random.Random(20240601)

MakeIdentity = Callable[..., IdentityRecord]


@pytest.fixture
def make_identity() -> MakeIdentity:
    """A factory of valid 本人確認情報 (fresh valid 住民票コード each call; override any item)."""
    rng = random.Random(_RNG.random())

    def make(**overrides: Any) -> IdentityRecord:
        kana = overrides.pop("name_kana", "ヤマダ　タロウ")
        values: dict[str, Any] = {
            "resident_code": random_resident_code(rng),
            "name_kanji": "山田　太郎",
            "name_kana": kana,
            "name_kana_seion": to_seion(kana),
            "birth_date": date(1980, 4, 1),
            "sex": Sex.MALE,
            "municipality_code": "041009",
            "address": "宮城県仙台市青葉区国分町三丁目７番１号",
            "change_reason": ChangeReason.BIRTH,
            "change_date": date(1980, 4, 1),
            "sequence": 1,
            "timestamp": datetime(2024, 6, 1, 9, 30, 15, 123456, tzinfo=UTC),
        }
        values.update(overrides)
        return IdentityRecord(**values)

    return make


def full_identity(make: MakeIdentity, **overrides: Any) -> IdentityRecord:
    """Every one of the 40 items set to a non-default value (so a dropped column shows)."""
    values: dict[str, Any] = {
        "name_kanji": "髙橋　花子",
        "name_gaiji_count": 1,
        "name_kana": "タカハシ　ハナコ",
        "birth_date": date(1955, 12, 31),
        "sex": Sex.FEMALE,
        "municipality_code": "042021",
        "oaza_code": "0012",
        "postcode": "9868501",
        "address": "宮城県石巻市穀町１４番１号",
        "address_gaiji_count": 2,
        "individual_number": "123456789018",
        "became_resident_on": date(1990, 1, 2),
        "address_set_on": date(2001, 2, 3),
        "notified_on": date(2001, 2, 4),
        "previous_municipality_code": "131016",
        "previous_address": "東京都千代田区丸の内一丁目",
        "previous_address_gaiji_count": 3,
        "relationship": "世帯主",
        "change_reason": ChangeReason.MOVE_IN,
        "change_date": date(2001, 2, 3),
        "change_reason_detail": "特例転入",
        "old_resident_code": "98765432109",
        "resident_code_since": date(2002, 8, 5),
        "request_number": "REQ-0001",
        "operator_id": "op-17",
        "terminal_id": "term.042021.001",
        "sequence": 42,
        "recovery_sequence": 7,
        "update_prohibited": True,
        "prospective": True,
        "locked": True,
        "gaiji_flag": True,
        "record_status": RecordStatus.REMOVED,
        "timestamp": datetime(2031, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
        "former_surname_kanji": "佐藤",
        "former_surname_gaiji_count": 4,
        "former_surname_kana": "サトウ",
        "former_surname_gaiji_serial": 5,
    }
    values.update(overrides)
    values.setdefault("name_kana_seion", to_seion(values["name_kana"]))
    return make(**values)
