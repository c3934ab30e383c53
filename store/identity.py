"""本人確認情報の保存と参照 (identity persistence): what nodes use to read and write file (2).

Everything here takes and returns store/records.py dataclasses, never peewee rows. The functions
use the process's store database (`store.db.open_database` binds it) and join the caller's
transaction when there is one, so a handler's writes commit with its inbox row.

Hot paths avoid peewee's per-call query compilation and model instantiation: the SQL of each
lookup is compiled once per engine from the models (so column names still come from one place)
and rows are read as tuples and turned into dataclasses directly. ``bulk_load_identities`` goes
further and hands batches to the driver (sqlite3 ``executemany``, PostgreSQL ``COPY``).

Tiers: the CS holds the full 40-item `IdentityRecord` (``IdentityRow``); the prefecture and
national servers hold `ProvidedIdentity` copies, addressed by ``tier`` ("prefecture" or
"national").
"""

from __future__ import annotations

import contextlib
import gc
import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

import peewee

from store.db import SQLITE_PRAGMAS, current_database, is_postgresql, translate_errors
from store.models import (
    EPOCH,
    BaseModel,
    EnumField,
    IdentityHistoryRow,
    IdentityRow,
    IsoDateField,
    NationalIdentityHistoryRow,
    NationalIdentityRow,
    PrefectureIdentityHistoryRow,
    PrefectureIdentityRow,
    UtcMicrosField,
    create_prefix_indexes,
    drop_prefix_indexes,
    micros_from_datetime,
)
from store.records import ChangeReason, IdentityRecord, ProvidedIdentity, RecordStatus

__all__ = [
    "TIERS",
    "Tier",
    "bulk_load_identities",
    "bulk_load_provided",
    "count_identities",
    "get_by_individual_number",
    "get_by_resident_code",
    "get_provided",
    "get_provided_by_individual_number",
    "history",
    "iter_identities",
    "provided_history",
    "save_provided",
    "save_record",
]

BULK_CACHE_KIB = -524_288
"""SQLite page cache during a bulk load's index rebuild (negative = KiB, i.e. 512 MiB)."""

Tier = Literal["prefecture", "national"]
TIERS: tuple[Tier, ...] = ("prefecture", "national")

R = TypeVar("R", IdentityRecord, ProvidedIdentity)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
"""PostgreSQL COPY text format: these four are escaped in values; NULL is written \\N."""

# --- row <-> dataclass codecs ------------------------------------------------------------------


@dataclass(frozen=True)
class _Codec(Generic[R]):
    """How one record class maps onto one table, with SQL and converters built for one engine.

    ``to_record`` and ``to_params`` are generated functions (one expression per column, like
    dataclasses' own ``__init__``): a generic loop over 40 columns with per-type dispatch cost
    more than the database call it wraps.
    """

    record_cls: type[R]
    model: type[BaseModel]
    history_model: type[BaseModel]
    names: tuple[str, ...]
    to_record: Callable[[Sequence[Any]], R]
    to_params: Callable[[R], tuple[Any, ...]]
    to_copy_line: Callable[[tuple[Any, ...]], str]  # a to_params tuple as a COPY text line
    select_sql: str  # SELECT <names> FROM table AS t1 (no WHERE)
    insert_sql: str  # INSERT INTO table (<names>) VALUES (params)
    by_code_sql: str  # select_sql WHERE resident_code = ?
    by_number_sql: str  # select_sql WHERE individual_number = ?, 現存 first

    def to_row_dict(self, record: R) -> dict[str, Any]:
        return dict(zip(self.names, self.to_params(record), strict=True))


_CODECS: dict[tuple[type, type[BaseModel]], _Codec[Any]] = {}


def _codec(
    record_cls: type[R], model: type[BaseModel], history_model: type[BaseModel]
) -> _Codec[R]:
    db = current_database()
    key = (type(db), model)
    codec = _CODECS.get(key)
    if codec is None:
        codec = _CODECS[key] = _build_codec(db, record_cls, model, history_model)
    return codec


def _build_codec(
    db: peewee.Database,
    record_cls: type[R],
    model: type[BaseModel],
    history_model: type[BaseModel],
) -> _Codec[R]:
    names = tuple(f.name for f in fields(record_cls))
    columns = [model._meta.fields[name] for name in names]
    sqlite = not is_postgresql(db)
    namespace: dict[str, Any] = {
        "_cls": record_cls,
        "_date": date.fromisoformat,
        "_iso": date.isoformat,
        "_epoch": EPOCH,
        "_td": timedelta,
        "_micros": micros_from_datetime,  # refuses naive datetimes rather than guessing
        "_escapes": _COPY_ESCAPES,
    }
    reads, writes, copies = [], [], []
    for i, (name, field) in enumerate(zip(names, columns, strict=True)):
        read = write = None
        if isinstance(field, IsoDateField):
            read, write = ("_date({})" if sqlite else None), "_iso({})"
        elif isinstance(field, UtcMicrosField):
            read, write = "_epoch + _td(microseconds={})", "_micros({})"
        elif isinstance(field, EnumField):
            namespace[f"_enum{i}"] = field.enum._value2member_map_.__getitem__
            read = f"_enum{i}({{}})"  # StrEnum values are str: both drivers take them as-is
        elif isinstance(field, peewee.BooleanField):
            read = "bool({})" if sqlite else None
        reads.append(f"{name}={_convert(read, f'row[{i}]', field.null)}")
        writes.append(_convert(write, f"record.{name}", field.null))
        # COPY text format of the to_params value: integers as digits, booleans t/f, every
        # text (dates are ISO text by then) with backslash, tab, newline and CR escaped.
        if isinstance(field, peewee.BooleanField):
            text = '("t" if {} else "f")'
        elif isinstance(field, peewee.IntegerField):
            text = "str({})"
        else:
            text = "{}.translate(_escapes)"
        copies.append(
            f'("\\\\N" if row[{i}] is None else {text.format(f"row[{i}]")})'
            if field.null
            else text.format(f"row[{i}]")
        )
    source = (
        "def to_record(row):\n    return _cls(" + ", ".join(reads) + ")\n"
        "def to_params(record):\n    return (" + ", ".join(writes) + ",)\n"
        "def to_copy_line(row):\n    return '\\t'.join((" + ", ".join(copies) + ",)) + '\\n'\n"
    )
    exec(compile(source, f"<store.identity codec {model.__name__}>", "exec"), namespace)
    select_sql, _ = db.get_sql_context().sql(model.select(*columns)).query()
    quoted = ", ".join(f'"{name}"' for name in names)
    placeholders = ", ".join([db.param] * len(names))
    insert_sql = f'INSERT INTO "{model._meta.table_name}" ({quoted}) VALUES ({placeholders})'
    # The model's own alias ("t1") is what peewee's compiled SELECT uses.
    by_code_sql = f'{select_sql} WHERE ("t1"."resident_code" = {db.param})'
    current = RecordStatus.CURRENT.value
    by_number_sql = (
        f'{select_sql} WHERE ("t1"."individual_number" = {db.param}) '
        f'ORDER BY ("t1"."record_status" = \'{current}\') DESC, "t1"."id" DESC'
    )
    return _Codec(
        record_cls,
        model,
        history_model,
        names,
        namespace["to_record"],
        namespace["to_params"],
        namespace["to_copy_line"],
        select_sql,
        insert_sql,
        by_code_sql,
        by_number_sql,
    )


def _convert(template: str | None, operand: str, nullable: bool) -> str:
    if template is None:
        return operand
    if not nullable:
        return template.format(operand)
    return f"(None if {operand} is None else {template.format(operand)})"


def _cs() -> _Codec[IdentityRecord]:
    return _codec(IdentityRecord, IdentityRow, IdentityHistoryRow)


_TIER_MODELS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "prefecture": (PrefectureIdentityRow, PrefectureIdentityHistoryRow),
    "national": (NationalIdentityRow, NationalIdentityHistoryRow),
}


def _tier(tier: str) -> _Codec[ProvidedIdentity]:
    try:
        model, history_model = _TIER_MODELS[tier]
    except KeyError:
        raise ValueError(f"unknown tier {tier!r}; expected one of {TIERS}") from None
    return _codec(ProvidedIdentity, model, history_model)


def _fetch_one(codec: _Codec[R], sql: str, value: str) -> R | None:
    db = current_database()
    with translate_errors():
        row = db.execute_sql(sql, (value,)).fetchone()
    return None if row is None else codec.to_record(row)


def _fetch_many(codec: _Codec[R], sql: str, params: Sequence[Any]) -> list[R]:
    db = current_database()
    with translate_errors():
        rows = db.execute_sql(sql, params).fetchall()
    return [codec.to_record(row) for row in rows]


def _transaction(db: peewee.Database) -> contextlib.AbstractContextManager[Any]:
    """The caller's transaction when there is one (no savepoint cost), else a new one."""
    return contextlib.nullcontext() if db.in_transaction() else db.atomic()


# --- CS: 本人確認情報 (IdentityRecord) ----------------------------------------------------------


def get_by_resident_code(code: str) -> IdentityRecord | None:
    """The current record under a 住民票コード (the primary matching key, §4.2), or None."""
    codec = _cs()
    return _fetch_one(codec, codec.by_code_sql, code)


def get_by_individual_number(number: str) -> IdentityRecord | None:
    """The record holding a 個人番号; a 現存 (current) record wins over a 消除 one."""
    codec = _cs()
    return _fetch_one(codec, codec.by_number_sql, number)


def history(code: str) -> list[tuple[int, IdentityRecord]]:
    """Every saved version of a person's record, oldest first, with its history number."""
    return _history(_cs(), code)


def save_record(
    record: IdentityRecord,
    *,
    history: bool = True,
    recorded_at: datetime | None = None,
    previous: IdentityRecord | None = None,
) -> int | None:
    """Upsert the current row and append a history snapshot, in one transaction.

    Joins the caller's transaction (a handler's ``journal.atomic()``) when there is one. For a
    住民票コード変更 (``change_reason`` 住民票コード変更 with ``old_resident_code``) the current row
    under the old code is replaced by this one; the old code's history stays under the old code.

    Args:
        history: also append a snapshot (the population loader and tests may skip it).
        recorded_at: when the version was recorded; defaults to the record's タイムスタンプ.
        previous: the current row as the caller read it in this transaction. Only the items
            that differ from it are then written: a 転居 rewrites the address, not the name
            and birth-date indexes a whole-row upsert would rewrite too.

    Returns:
        The new history number, or None when no snapshot was written.
    """
    return _save(_cs(), record, history, recorded_at or record.timestamp, previous)


# --- prefecture / national: the provided copies (ProvidedIdentity) ------------------------------


def get_provided(tier: Tier, code: str) -> ProvidedIdentity | None:
    """都道府県知事保存 / 機構保存本人確認情報 under a 住民票コード, or None."""
    codec = _tier(tier)
    return _fetch_one(codec, codec.by_code_sql, code)


def get_provided_by_individual_number(tier: Tier, number: str) -> ProvidedIdentity | None:
    """National's query by 個人番号 (§4.2); a 現存 record wins over a 消除 one."""
    codec = _tier(tier)
    return _fetch_one(codec, codec.by_number_sql, number)


def provided_history(tier: Tier, code: str) -> list[tuple[int, ProvidedIdentity]]:
    return _history(_tier(tier), code)


def save_provided(
    tier: Tier,
    provided: ProvidedIdentity,
    *,
    history: bool = True,
    recorded_at: datetime | None = None,
    previous: ProvidedIdentity | None = None,
) -> int | None:
    """Upsert the tier's copy and append a history snapshot; see `save_record` (`previous`
    too).

    Ordering (更新順番号) is the caller's rule: the prefecture applies notices in order and this
    function stores whatever it is given.
    """
    return _save(_tier(tier), provided, history, recorded_at or datetime.now(UTC), previous)


# --- shared implementation ---------------------------------------------------------------------


_UPSERT_SQL: dict[tuple[int, str], tuple[str, str, str]] = {}


def _write_sql(codec: _Codec[Any], db: peewee.Database) -> tuple[str, str, str]:
    """(upsert current, append history, delete by code) for this codec and engine — raw SQL,
    because peewee's query building cost more than the writes themselves on the CS's hot path
    (one upsert + one history row per applied update). The history row takes the next
    history_no in the same statement (a scalar subquery inside VALUES, so that PostgreSQL
    still types the other values by their columns)."""
    key = (id(codec), type(db).__name__)
    hit = _UPSERT_SQL.get(key)
    if hit is not None:
        return hit
    table = codec.model._meta.table_name
    history = codec.history_model._meta.table_name
    cols = ", ".join(f'"{n}"' for n in codec.names)
    p = db.param
    marks = ", ".join([p] * len(codec.names))
    updates = ", ".join(f'"{n}" = EXCLUDED."{n}"' for n in codec.names[1:])
    sql = (
        f'INSERT INTO "{table}" ({cols}) VALUES ({marks}) '
        f'ON CONFLICT ("resident_code") DO UPDATE SET {updates}',
        f'INSERT INTO "{history}" ({cols}, "history_no", "recorded_at") VALUES ({marks}, '
        f'(SELECT COALESCE(MAX("history_no"), 0) + 1 FROM "{history}" '
        f'WHERE "resident_code" = {p}), {p}) RETURNING "history_no"',
        f'DELETE FROM "{table}" WHERE "resident_code" = {p}',
    )
    _UPSERT_SQL[key] = sql
    return sql


_UPDATE_SQL: dict[tuple[int, str, tuple[int, ...]], str] = {}


def _update_sql(codec: _Codec[Any], db: peewee.Database, columns: tuple[int, ...]) -> str:
    """UPDATE of just these columns (indexes into codec.names) of one current row."""
    key = (id(codec), type(db).__name__, columns)
    sql = _UPDATE_SQL.get(key)
    if sql is None:
        p = db.param
        sets = ", ".join(f'"{codec.names[i]}" = {p}' for i in columns)
        table = codec.model._meta.table_name
        sql = _UPDATE_SQL[key] = f'UPDATE "{table}" SET {sets} WHERE "resident_code" = {p}'
    return sql


def _save(
    codec: _Codec[R],
    record: R,
    with_history: bool,
    recorded_at: datetime,
    previous: R | None = None,
) -> int | None:
    db = current_database()
    upsert, _append, delete = _write_sql(codec, db)
    params = codec.to_params(record)
    replaced = (
        record.old_resident_code
        if record.change_reason is ChangeReason.RESIDENT_CODE_CHANGE
        and record.old_resident_code
        and record.old_resident_code != record.resident_code
        else None
    )
    with translate_errors(), _transaction(db):
        if replaced is not None:
            db.execute_sql(delete, (replaced,))
            db.execute_sql(upsert, params)
        elif previous is not None and previous.resident_code == record.resident_code:
            old = codec.to_params(previous)
            changed = tuple(i for i, (a, b) in enumerate(zip(old, params, strict=True)) if a != b)
            if changed:
                sql = _update_sql(codec, db, changed)
                values = [params[i] for i in changed]
                values.append(record.resident_code)
                if db.execute_sql(sql, values).rowcount != 1:
                    db.execute_sql(upsert, params)  # the row was not there after all
        else:
            db.execute_sql(upsert, params)
        if not with_history:
            return None
        return _append_history_params(codec, db, record.resident_code, params, recorded_at)


def _append_history_params(
    codec: _Codec[Any],
    db: peewee.Database,
    code: str,
    params: tuple[Any, ...],
    recorded_at: datetime,
) -> int:
    _upsert, append_sql, _delete = _write_sql(codec, db)
    micros = (recorded_at - EPOCH) // timedelta(microseconds=1)
    row = db.execute_sql(append_sql, (*params, code, micros)).fetchone()
    return int(row[0])


def append_history(codec: _Codec[Any], record: Any, recorded_at: datetime) -> int:
    """A history snapshot without touching the current row (store.ordering keeps stale versions
    this way)."""
    db = current_database()
    with translate_errors(), _transaction(db):
        return _append_history_params(
            codec, db, record.resident_code, codec.to_params(record), recorded_at
        )


def _history(codec: _Codec[R], code: str) -> list[tuple[int, R]]:
    db = current_database()
    history_model = codec.history_model
    columns = [history_model._meta.fields[name] for name in codec.names]
    query = (
        history_model.select(history_model._meta.fields["history_no"], *columns)
        .where(history_model._meta.fields["resident_code"] == code)
        .order_by(history_model._meta.fields["history_no"])
    )
    sql, params = db.get_sql_context().sql(query).query()
    with translate_errors():
        rows = db.execute_sql(sql, params).fetchall()
    return [(row[0], codec.to_record(row[1:])) for row in rows]


# --- population: bulk load, streaming, counting ------------------------------------------------


def bulk_load_identities(
    records: Iterable[IdentityRecord],
    *,
    batch: int = 20_000,
    rebuild_indexes: bool | None = None,
) -> int:
    """Insert many CS records fast, in one transaction (the synthetic population loader).

    No history snapshots are written: a loaded population is the starting state, not a change.
    Rows go to the driver in batches (sqlite3 ``executemany``, PostgreSQL ``COPY FROM STDIN``)
    with no per-row peewee work.

    When `rebuild_indexes` is true (by default: when the table starts empty) every index of the
    table, the unique 住民票コード one included, is dropped before the load and rebuilt after it.
    Building a B-tree once by sorting is several times cheaper than keeping seven indexes up to
    date through a million random inserts (measured: the load goes from ~0.45x to ~0.6-0.7x of
    a bare sqlite3 executemany into an index-less table); under an already large table the
    rebuild would cost more than it saves. Drop, load and rebuild share one transaction: a
    duplicate 住民票コード makes the unique index build fail with `DuplicateKey` and the table
    and its indexes are as they were. A sampled ANALYZE runs at the end so the planner knows
    the new sizes.

    Returns:
        The number of rows inserted.
    """
    return _bulk_load(_cs(), records, batch, rebuild_indexes)


def bulk_load_provided(
    tier: Tier,
    records: Iterable[ProvidedIdentity],
    *,
    batch: int = 20_000,
    rebuild_indexes: bool | None = None,
) -> int:
    """`bulk_load_identities` for the prefecture's or national's copy (seeding every tier)."""
    return _bulk_load(_tier(tier), records, batch, rebuild_indexes)


def _bulk_load(
    codec: _Codec[R], records: Iterable[R], batch: int, rebuild_indexes: bool | None
) -> int:
    db = current_database()
    model = codec.model
    with translate_errors():
        if rebuild_indexes is None:
            rebuild_indexes = not model.select(model._meta.primary_key).limit(1).exists()
        sqlite = not is_postgresql(db)
        if sqlite and rebuild_indexes:
            # The index builds sort the whole table; with 512 MiB of page cache instead of the
            # usual 64 they sort in memory (1.1 M rows: 10.6 s -> 6.3 s here). Given back after.
            db.execute_sql(f"PRAGMA cache_size = {BULK_CACHE_KIB}")
        try:
            with db.atomic():
                if rebuild_indexes:
                    _drop_indexes(model)
                total = _insert_batches(db, codec, records, batch)
                if rebuild_indexes:
                    _create_indexes(model)
        finally:
            if sqlite and rebuild_indexes:
                db.execute_sql(f"PRAGMA cache_size = {dict(SQLITE_PRAGMAS)['cache_size']}")
        if sqlite:
            # Sampled statistics (as PRAGMA optimize does): exact counts add nothing to the plan
            # choice and cost a full pass over every index.
            db.execute_sql("PRAGMA analysis_limit = 1000")
        db.execute_sql(f'ANALYZE "{model._meta.table_name}"')
    return total


def _insert_batches(db: peewee.Database, codec: _Codec[R], records: Iterable[R], size: int) -> int:
    to_params = codec.to_params
    to_copy_line = codec.to_copy_line
    total = 0
    cursor = db.cursor()
    if is_postgresql(db) and hasattr(cursor, "copy_expert"):
        # COPY, not INSERT: psycopg2's execute_values spends most of its time building and the
        # server parsing one huge VALUES list; COPY's text stream is several times faster.
        columns = ", ".join(f'"{name}"' for name in codec.names)
        copy_sql = f'COPY "{codec.model._meta.table_name}" ({columns}) FROM STDIN'

        def flush(rows: list[tuple[Any, ...]]) -> None:
            cursor.copy_expert(copy_sql, io.StringIO("".join(map(to_copy_line, rows))))

    elif is_postgresql(db):  # psycopg 3 (no copy_expert): plain executemany

        def flush(rows: list[tuple[Any, ...]]) -> None:
            cursor.executemany(codec.insert_sql, rows)

    else:

        def flush(rows: list[tuple[Any, ...]]) -> None:
            cursor.executemany(codec.insert_sql, rows)

    # The cyclic GC would walk the caller's (often million-record) population list again and
    # again while we allocate parameter tuples; nothing here creates cycles, so pause it.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        iterator = iter(records)
        while chunk := list(map(to_params, itertools.islice(iterator, size))):
            flush(chunk)
            total += len(chunk)
    finally:
        if gc_was_enabled:
            gc.enable()
    return total


def _model_indexes(model: type[BaseModel]) -> list[peewee.ModelIndex]:
    return list(model._meta.fields_to_index())


def _drop_indexes(model: type[BaseModel]) -> None:
    db = model._meta.database
    for index in _model_indexes(model):
        db.execute_sql(f'DROP INDEX IF EXISTS "{index._name}"')  # type: ignore[attr-defined]
    drop_prefix_indexes(model)


def _create_indexes(model: type[BaseModel]) -> None:
    db = model._meta.database
    if not is_postgresql(db):
        # Let SQLite's sorter use a helper thread for the index builds (per connection; only
        # large sorts use it).
        db.execute_sql("PRAGMA threads = 2")
    for index in _model_indexes(model):
        sql, params = db.get_sql_context().sql(index.safe()).query()
        db.execute_sql(sql, params)
    create_prefix_indexes(model)


def iter_identities(
    municipality: str | None = None, *, batch: int = 5_000
) -> Iterator[IdentityRecord]:
    """Stream CS records (all, or one 市町村コード's) in insertion order, `batch` rows at a time.

    Keyset pagination on the row id keeps memory flat on both engines (psycopg2 would otherwise
    fetch a whole result set at once) without holding a transaction open between batches.
    """
    codec = _cs()
    db = current_database()
    p = db.param
    where = f'"t1"."id" > {p}'
    if municipality is not None:
        where += f' AND "t1"."municipality_code" = {p}'
    select = codec.select_sql.replace(" FROM ", ', "t1"."id" FROM ', 1)
    sql = f'{select} WHERE {where} ORDER BY "t1"."id" LIMIT {int(batch)}'

    last = 0
    while True:
        params: list[Any] = [last] if municipality is None else [last, municipality]
        with translate_errors():
            rows = db.execute_sql(sql, params).fetchall()
        for row in rows:
            yield codec.to_record(row[:-1])
        if len(rows) < batch:
            return
        last = rows[-1][-1]


def count_identities(municipality: str | None = None) -> int:
    query = IdentityRow.select()
    if municipality is not None:
        query = query.where(IdentityRow.municipality_code == municipality)
    with translate_errors():
        return int(query.count())


def provided_version_seen(tier: Tier, code: str, municipality: str, sequence: int) -> bool:
    """Whether the tier's history holds this version (municipality, 更新順番号) of a person —
    the duplicate check the prefecture and national run on every notice, so raw SQL."""
    db = current_database()
    table = _tier(tier).history_model._meta.table_name
    p = db.param
    with translate_errors():
        row = db.execute_sql(
            f'SELECT 1 FROM "{table}" WHERE "resident_code" = {p} AND "municipality_code" = {p} '
            f'AND "sequence" = {p} LIMIT 1',
            (code, municipality, sequence),
        ).fetchone()
    return row is not None
