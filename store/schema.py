"""スキーマ管理 (schema management): which tables each node role holds, creation and migrations.

Nothing here runs at import. A node (or ``juki init``) calls `init_store(url, role)` once; it
creates the role's missing tables and records the schema version in ``schema_version``. Later
modules add tables to a role with `register_tables` (nodes/registry's simplified 住民基本台帳,
cardmgmt's cards, store/auditlog's logs) before calling `init_store`.

Migrations are numbered; version 1 is the initial schema. A fresh database is created from the
current models and stamped with the latest version (replaying ALTERs on an empty database would
only repeat what the models already say); an existing database gets every migration above its
stored version, in order, each in its own transaction with its version row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import peewee

from store import models
from store.db import SchemaError, StoreError, bind_database, open_database, translate_errors
from store.journal import JOURNAL_MODELS
from store.models import BaseModel

__all__ = [
    "MIGRATIONS",
    "ROLES",
    "TABLES_BY_ROLE",
    "Migration",
    "SchemaVersion",
    "all_models",
    "current_version",
    "init_store",
    "migrate",
    "register_migration",
    "register_tables",
]

ROLES = ("municipal_cs", "prefecture", "national", "card_management", "existing_registry")


class SchemaVersion(BaseModel):
    """One row per applied migration (version 1 = the initial schema)."""

    version = peewee.IntegerField(primary_key=True)
    description = peewee.CharField(max_length=200)
    applied_at = peewee.DoubleField()

    class Meta:
        table_name = "schema_version"


MigrationFn = Callable[[peewee.Database, str], None]


@dataclass(frozen=True, slots=True)
class Migration:
    """A numbered schema change; `apply(db, role)` runs inside a transaction."""

    version: int
    description: str
    apply: MigrationFn


def _initial(db: peewee.Database, role: str) -> None:
    db.create_tables(TABLES_BY_ROLE[role], safe=True)


def _provided_order_columns(db: peewee.Database, role: str) -> None:
    """Provided copies gained 市町村コード（転入前） and 住民となった日 (cross-city order)."""
    for model in (
        models.PrefectureIdentityRow,
        models.PrefectureIdentityHistoryRow,
        models.NationalIdentityRow,
        models.NationalIdentityHistoryRow,
    ):
        table = model._meta.table_name
        if not db.table_exists(table):
            continue
        present = {column.name for column in db.get_columns(table)}
        for name in ("previous_municipality_code", "became_resident_on"):
            if name not in present:
                field = model._meta.fields[name]
                ddl = db.get_sql_context().sql(field.ddl(db.get_sql_context())).query()[0]
                db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN {ddl}')


def _create_model_index(db: peewee.Database, model: type[BaseModel], fields: list[str]) -> None:
    """Create the index the model declares on exactly `fields` (if missing), as the model says."""
    for index in model._meta.fields_to_index():
        if [f.name for f in index._expressions] == fields:
            sql, params = db.get_sql_context().sql(index.safe()).query()
            db.execute_sql(sql, params)


def _birth_name_indexes(db: peewee.Database, role: str) -> None:
    """Replace the 生年月日 index by (生年月日, 清音化かな, 漢字氏名) on the current files."""
    for model in (models.IdentityRow, models.PrefectureIdentityRow, models.NationalIdentityRow):
        table = model._meta.table_name
        if not db.table_exists(table):
            continue
        db.execute_sql(f'DROP INDEX IF EXISTS "{table}_birth_date"')
        _create_model_index(db, model, ["birth_date", "name_kana_seion", "name_kanji"])


def _version_seen_indexes(db: peewee.Database, role: str) -> None:
    """The tiers' history gains (resident_code, municipality_code, sequence) for the duplicate
    probe run on every notice."""
    for model in (models.PrefectureIdentityHistoryRow, models.NationalIdentityHistoryRow):
        if db.table_exists(model._meta.table_name):
            _create_model_index(db, model, ["resident_code", "municipality_code", "sequence"])


MIGRATIONS: list[Migration] = [
    Migration(1, "initial schema", _initial),
    Migration(
        2, "provided copies: previous municipality, became resident on", _provided_order_columns
    ),
    Migration(3, "生年月日 index carries the names", _birth_name_indexes),
    Migration(4, "tier history: index for the duplicate probe", _version_seen_indexes),
]

TABLES_BY_ROLE: dict[str, list[type[BaseModel]]] = {
    "municipal_cs": [
        *JOURNAL_MODELS,
        models.IdentityRow,
        models.IdentityHistoryRow,
        models.PendingMoveOutRow,
        models.DestinationRow,
    ],
    "prefecture": [
        *JOURNAL_MODELS,
        models.PrefectureIdentityRow,
        models.PrefectureIdentityHistoryRow,
    ],
    "national": [
        *JOURNAL_MODELS,
        models.NationalIdentityRow,
        models.NationalIdentityHistoryRow,
        models.IssuedNumberRow,
        models.ResidentCodeRow,
    ],
    "card_management": [*JOURNAL_MODELS],
    "existing_registry": [*JOURNAL_MODELS],
}
"""The tables of each node role; `register_tables` appends to it."""


def register_tables(role: str, *table_models: type[BaseModel]) -> None:
    """Give `role` more tables (idempotent: a model registered twice is listed once)."""
    tables = _role_tables(role)
    for model in table_models:
        if model not in tables:
            tables.append(model)


def register_migration(version: int, description: str) -> Callable[[MigrationFn], MigrationFn]:
    """Decorator adding a numbered migration; versions must be new and increasing."""

    def decorate(fn: MigrationFn) -> MigrationFn:
        if any(m.version >= version for m in MIGRATIONS):
            raise ValueError(f"migration {version} is not above {MIGRATIONS[-1].version}")
        MIGRATIONS.append(Migration(version, description, fn))
        return fn

    return decorate


def all_models() -> list[type[BaseModel]]:
    """Every table of every role (plus ``schema_version``), each once, in creation order."""
    seen: list[type[BaseModel]] = [SchemaVersion]
    for tables in TABLES_BY_ROLE.values():
        seen.extend(m for m in tables if m not in seen)
    return seen


def current_version(db: peewee.Database) -> int:
    """The highest applied migration, 0 for a database never initialised."""
    with translate_errors():
        if not db.table_exists(SchemaVersion._meta.table_name):
            return 0
        return int(SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar(db) or 0)


def init_store(url: str | peewee.Database, role: str) -> list[str]:
    """Create the role's missing tables and bring the schema up to date.

    Args:
        url: a store URL (opened and bound to the process) or an already opened database.
        role: one of `ROLES`.

    Returns:
        The names of the tables this call created (empty when the store was already complete).

    Raises:
        SchemaError: the store was written by a newer juki (its version is above ours).
    """
    tables = _role_tables(role)
    if isinstance(url, str):
        db = open_database(url)
    else:
        db = url
        bind_database(db)  # create_tables goes through the models' (proxy-bound) database
    with translate_errors():
        before = set(db.get_tables())
        version = current_version(db)
        latest = MIGRATIONS[-1].version
        if version > latest:
            raise SchemaError(f"store schema version {version} is newer than this juki ({latest})")
        if version == 0:
            with db.atomic():
                db.create_tables([SchemaVersion, *tables], safe=True)
                _stamp(db, MIGRATIONS)
        else:
            migrate(db, role)
            db.create_tables(tables, safe=True)
        after = db.get_tables()
    return sorted(set(after) - before)


def migrate(db: peewee.Database, role: str, *, target: int | None = None) -> list[int]:
    """Apply the migrations above the store's version (up to `target`); returns those applied.

    Each migration commits together with its ``schema_version`` row, so a crash mid-way leaves
    the store at the last complete version (on PostgreSQL, whose DDL is transactional; SQLite
    too, except for the few statements it cannot run in a transaction).
    """
    _role_tables(role)
    bind_database(db)
    applied: list[int] = []
    with translate_errors():
        db.create_tables([SchemaVersion], safe=True)
        version = current_version(db)
        for migration in sorted(MIGRATIONS, key=lambda m: m.version):
            if migration.version <= version:
                continue
            if target is not None and migration.version > target:
                break
            with db.atomic():
                migration.apply(db, role)
                _stamp(db, [migration])
            applied.append(migration.version)
    return applied


def _stamp(db: peewee.Database, migrations: Iterable[Migration]) -> None:
    now = time.time()
    rows = [
        {"version": m.version, "description": m.description, "applied_at": now} for m in migrations
    ]
    SchemaVersion.insert_many(rows).execute(db)


def _role_tables(role: str) -> list[type[BaseModel]]:
    try:
        return TABLES_BY_ROLE[role]
    except KeyError:
        raise StoreError(f"unknown node role {role!r}; expected one of {ROLES}") from None
