"""Schema: tables per role, idempotent creation, version stamping and numbered migrations."""

from __future__ import annotations

import subprocess
import sys

import peewee
import pytest

from store import schema
from store.db import SchemaError, StoreError, is_postgresql
from store.models import BaseModel
from store.schema import (
    ROLES,
    TABLES_BY_ROLE,
    Migration,
    SchemaVersion,
    current_version,
    init_store,
    migrate,
    register_tables,
)

JOURNAL_TABLES = {"inbox", "outbox", "refusal"}
LATEST = schema.MIGRATIONS[-1].version  # the shipped migrations; tests add theirs above it
A, B = LATEST + 1, LATEST + 2


class ExtraRow(BaseModel):
    """A table a later module registers (like nodes/registry's 住民基本台帳)."""

    note = peewee.TextField()

    class Meta:
        table_name = "test_extra"


@pytest.fixture
def restore_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that register tables or migrations must not leak them into other tests."""
    monkeypatch.setattr(schema, "MIGRATIONS", list(schema.MIGRATIONS))
    monkeypatch.setattr(
        schema, "TABLES_BY_ROLE", {role: list(ms) for role, ms in TABLES_BY_ROLE.items()}
    )


def test_every_role_has_the_journal() -> None:
    assert set(TABLES_BY_ROLE) == set(ROLES)
    for role in ROLES:
        names = {m._meta.table_name for m in TABLES_BY_ROLE[role]}
        assert names >= JOURNAL_TABLES, role


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("municipal_cs", {"identity", "identity_history", "pending_move_out", "destination"}),
        ("prefecture", {"prefecture_identity", "prefecture_identity_history"}),
        (
            "national",
            {"national_identity", "national_identity_history", "issued_number", "resident_code"},
        ),
    ],
)
def test_init_store_creates_the_roles_tables_once(
    empty_db: peewee.Database, role: str, expected: set[str]
) -> None:
    created = init_store(empty_db, role)
    assert set(created) >= expected | JOURNAL_TABLES | {"schema_version"}
    assert "identity" not in created or role == "municipal_cs"
    assert set(empty_db.get_tables()) == set(created)
    assert current_version(empty_db) == schema.MIGRATIONS[-1].version
    assert init_store(empty_db, role) == []
    assert SchemaVersion.select().count() == len(schema.MIGRATIONS)


def test_init_store_from_a_url_binds_the_process(store_url: str) -> None:
    created = init_store(store_url, "prefecture")
    assert "prefecture_identity" in created
    db = SchemaVersion._meta.database.obj
    try:
        assert current_version(db) == LATEST
    finally:
        db.close()


def test_prefix_indexes_suit_the_engine(empty_db: peewee.Database) -> None:
    init_store(empty_db, "municipal_cs")
    definitions = {i.name: i.sql for i in empty_db.get_indexes("identity")}
    for column in ("name_kana_seion", "name_kanji"):
        sql = definitions[f"identity_{column}_prefix"]
        assert ("text_pattern_ops" in sql) == is_postgresql(empty_db), sql


def test_unknown_role_is_refused(empty_db: peewee.Database) -> None:
    with pytest.raises(StoreError, match="unknown node role"):
        init_store(empty_db, "city_hall")


def test_registered_tables_are_created_on_an_existing_store(
    empty_db: peewee.Database, restore_registry: None
) -> None:
    init_store(empty_db, "existing_registry")
    register_tables("existing_registry", ExtraRow, ExtraRow)
    assert schema.TABLES_BY_ROLE["existing_registry"].count(ExtraRow) == 1
    assert init_store(empty_db, "existing_registry") == ["test_extra"]
    ExtraRow.create(note="ok")


def test_migrate_applies_pending_versions_in_order(
    empty_db: peewee.Database, restore_registry: None
) -> None:
    init_store(empty_db, "card_management")
    applied: list[str] = []

    @schema.register_migration(A, "add a note table")
    def _two(db: peewee.Database, role: str) -> None:
        applied.append(f"A:{role}")
        db.create_tables([ExtraRow])

    @schema.register_migration(B, "fill it")
    def _three(db: peewee.Database, role: str) -> None:
        applied.append(f"B:{role}")
        ExtraRow.create(note="migrated")

    assert migrate(empty_db, "card_management", target=A) == [A]
    assert current_version(empty_db) == A
    assert migrate(empty_db, "card_management") == [B]
    assert migrate(empty_db, "card_management") == []
    assert applied == ["A:card_management", "B:card_management"]
    assert [r.note for r in ExtraRow.select()] == ["migrated"]
    descriptions = [r.description for r in SchemaVersion.select().order_by(SchemaVersion.version)]
    assert descriptions[0] == "initial schema"
    assert descriptions[-2:] == ["add a note table", "fill it"]


def test_a_failing_migration_leaves_the_previous_version(
    empty_db: peewee.Database, restore_registry: None
) -> None:
    init_store(empty_db, "card_management")

    @schema.register_migration(A, "breaks half way")
    def _broken(db: peewee.Database, role: str) -> None:
        db.create_tables([ExtraRow])
        ExtraRow.create(note="half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        migrate(empty_db, "card_management")
    assert current_version(empty_db) == LATEST
    assert "test_extra" not in empty_db.get_tables()  # both engines roll back DDL


def test_fresh_store_is_stamped_at_the_latest_version_without_replaying(
    empty_db: peewee.Database, restore_registry: None
) -> None:
    replayed: list[int] = []
    schema.MIGRATIONS.append(Migration(A, "alter", lambda db, role: replayed.append(A)))
    init_store(empty_db, "card_management")
    assert replayed == []
    assert current_version(empty_db) == A


def test_register_migration_refuses_old_numbers(restore_registry: None) -> None:
    with pytest.raises(ValueError):
        schema.register_migration(1, "again")(lambda db, role: None)


def test_a_newer_store_is_refused(empty_db: peewee.Database) -> None:
    init_store(empty_db, "card_management")
    SchemaVersion.create(version=999, description="from the future", applied_at=0.0)
    with pytest.raises(SchemaError):
        init_store(empty_db, "card_management")


def test_importing_the_store_touches_no_database() -> None:
    code = (
        "import store.schema, store.identity, store.search, store.journal\n"
        "from store.db import database_proxy\n"
        "assert database_proxy.obj is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_migration_2_adds_the_order_columns_to_a_version_1_store(
    empty_db: peewee.Database,
) -> None:
    init_store(empty_db, "national")
    # Make it what a version-1 store looked like: no order columns, version 1.
    for table in ("national_identity", "national_identity_history"):
        for column in ("previous_municipality_code", "became_resident_on"):
            empty_db.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
    SchemaVersion.delete().where(SchemaVersion.version > 1).execute()

    assert init_store(empty_db, "national") == []
    assert current_version(empty_db) >= 2
    for table in ("national_identity", "national_identity_history"):
        columns = {c.name for c in empty_db.get_columns(table)}
        assert {"previous_municipality_code", "became_resident_on"} <= columns, table


def _probe_index(db: peewee.Database, table: str) -> bool:
    wanted = ["resident_code", "municipality_code", "sequence"]
    return any(ix.columns == wanted for ix in db.get_indexes(table))


def test_migration_4_gives_the_tier_history_its_duplicate_probe_index(
    empty_db: peewee.Database,
) -> None:
    init_store(empty_db, "national")
    assert _probe_index(empty_db, "national_identity_history")
    # Make it what a version-3 store looked like: the history without that index.
    for ix in empty_db.get_indexes("national_identity_history"):
        if ix.columns == ["resident_code", "municipality_code", "sequence"]:
            empty_db.execute_sql(f'DROP INDEX "{ix.name}"')
    SchemaVersion.delete().where(SchemaVersion.version > 3).execute()
    assert not _probe_index(empty_db, "national_identity_history")

    assert init_store(empty_db, "national") == []
    assert current_version(empty_db) >= 4
    assert _probe_index(empty_db, "national_identity_history")
