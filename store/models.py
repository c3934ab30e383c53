"""記録の表 (store tables): the peewee models of the files the seed describes.

Every model binds to `store.db.database_proxy`. Nodes never build queries on these: they go
through store/identity.py, store/search.py and store/journal.py, which take and return the
dataclasses of store/records.py. Column names are the records' field names; the seed's item
number is in the comment beside each column.

Storage conventions (the same on SQLite and PostgreSQL, so a store can move between them):
    dates       DATE columns holding ISO ``YYYY-MM-DD`` (`IsoDateField`)
    timestamps  BIGINT microseconds since the epoch, UTC (`UtcMicrosField`): exact, sortable,
                and free of the driver's time-zone guesses
    enums       their Japanese / JIS value as text (`EnumField`)
    documents   msgpack bytes (`MsgpackField`): the 送付先 record and the 転出証明書情報 are kept
                exactly as received (V-9), including ``bytes`` items such as the 外字パターン

Prefix search (4情報: kana, kanji, address) needs an index that a ``starts with`` query can
range-scan (the name indexes also carry 住所, see `BaseModel.prefix_index_sql`). SQLite's
BINARY collation orders by code point, so a plain index serves a range
``col >= p AND col < p || U+10FFFF``. PostgreSQL's default collation may be linguistic, so there
the prefix columns are indexed with ``text_pattern_ops`` and queried with ``LIKE 'p%'``.
A model lists those columns in `prefix_columns`; `BaseModel.create_table` creates their indexes,
so ``db.create_tables`` makes them on either engine.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar

import msgpack
import peewee

from store.db import database_proxy, is_postgresql
from store.records import ChangeReason, RecordStatus, Sex

__all__ = [
    "EPOCH",
    "BaseModel",
    "DestinationRow",
    "EnumField",
    "IdentityHistoryRow",
    "IdentityRow",
    "IsoDateField",
    "IssuedNumberRow",
    "MsgpackField",
    "NationalIdentityHistoryRow",
    "NationalIdentityRow",
    "PendingMoveOutRow",
    "PrefectureIdentityHistoryRow",
    "PrefectureIdentityRow",
    "ResidentCodeRow",
    "UtcMicrosField",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Origin of the `UtcMicrosField` columns."""


# --- column types ----------------------------------------------------------------------------


class IsoDateField(peewee.Field):
    """A date stored as ISO text on SQLite and as DATE on PostgreSQL; always read as `date`."""

    field_type = "DATE"

    def db_value(self, value: date | str | None) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return value.isoformat()

    def python_value(self, value: date | str | None) -> date | None:
        if value is None or type(value) is date:
            return value
        return date.fromisoformat(value)  # type: ignore[arg-type]


def micros_from_datetime(value: datetime) -> int:
    """Exact integer microseconds since the epoch (naive datetimes are refused, not guessed)."""
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def datetime_from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


class UtcMicrosField(peewee.BigIntegerField):
    """An aware UTC datetime stored as integer microseconds since the epoch."""

    def db_value(self, value: datetime | int | None) -> int | None:
        if value is None or isinstance(value, int):
            return value
        return micros_from_datetime(value)

    def python_value(self, value: int | None) -> datetime | None:
        return None if value is None else datetime_from_micros(value)


class EnumField(peewee.CharField):
    """A StrEnum stored as its value."""

    def __init__(self, enum: type[StrEnum], **kwargs: Any) -> None:
        kwargs.setdefault("max_length", max(len(m.value) for m in enum) * 4)
        super().__init__(**kwargs)
        self.enum = enum
        self._by_value = {m.value: m for m in enum}

    def db_value(self, value: StrEnum | str | None) -> str | None:
        if value is None:
            return None
        return value.value if isinstance(value, StrEnum) else self.enum(value).value

    def python_value(self, value: str | None) -> StrEnum | None:
        return None if value is None else self._by_value[value]


class MsgpackField(peewee.BlobField):
    """A plain document (str/int/bool/None/bytes/list/dict) stored as msgpack bytes."""

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        return super().db_value(msgpack.packb(value, use_bin_type=True))

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        return msgpack.unpackb(bytes(value), raw=False)


# --- base ------------------------------------------------------------------------------------


class BaseModel(peewee.Model):
    """Binds every table to the process's store database (deferred until a node opens it)."""

    prefix_columns: ClassVar[tuple[str, ...]] = ()
    """Columns searched by prefix (4情報); indexed per engine, see the module docstring."""

    class Meta:
        database = database_proxy
        legacy_table_names = False

    @classmethod
    def create_table(cls, safe: bool = True, **options: Any) -> None:
        super().create_table(safe=safe, **options)
        create_prefix_indexes(cls)

    @classmethod
    def prefix_index_sql(cls) -> list[str]:
        """DDL of this table's prefix-search indexes for the bound engine.

        Each name index carries 住所 as its second column: a name prefix alone can match
        thousands (every サトウ), and with 住所 in the index the address condition is checked on
        the index entry instead of fetching each row (p99 of a surname + 町 search drops ~4x).
        """
        table = cls._meta.table_name
        ops = " text_pattern_ops" if is_postgresql(cls._meta.database) else ""
        return [
            f'CREATE INDEX IF NOT EXISTS "{table}_{column}_prefix" '
            f'ON "{table}" ("{column}"{ops}, "address"{ops})'
            for column in cls.prefix_columns
        ]


def create_prefix_indexes(model: type[BaseModel]) -> None:
    db = model._meta.database
    for sql in model.prefix_index_sql():
        db.execute_sql(sql)


def drop_prefix_indexes(model: type[BaseModel]) -> None:
    db = model._meta.database
    for column in model.prefix_columns:
        db.execute_sql(f'DROP INDEX IF EXISTS "{model._meta.table_name}_{column}_prefix"')


# --- 本人確認情報 (file 2, 40 items) ---------------------------------------------------------


class _IdentityColumns(BaseModel):
    """The 40 items of 本人確認情報 (seed-digest §3.2), shared by the current and history rows."""

    resident_code = peewee.CharField(max_length=11)  # 1 住民票コード
    name_kanji = peewee.TextField()  # 2 漢字氏名
    name_gaiji_count = peewee.IntegerField(default=0)  # 3 外字数（氏名）
    name_kana = peewee.TextField()  # 4 ふりがな氏名
    name_kana_seion = peewee.TextField()  # 5 清音化かな氏名
    birth_date = IsoDateField()  # 6 生年月日
    sex = EnumField(Sex)  # 7 性別
    municipality_code = peewee.CharField(max_length=6)  # 8 市町村コード
    oaza_code = peewee.CharField(max_length=16, null=True)  # 9 大字・字コード
    postcode = peewee.CharField(max_length=7, null=True)  # 10 郵便番号
    address = peewee.TextField()  # 11 住所
    address_gaiji_count = peewee.IntegerField(default=0)  # 12 外字数（住所）
    individual_number = peewee.CharField(max_length=12, null=True)  # 13 個人番号
    became_resident_on = IsoDateField(null=True)  # 14 住民となった日
    address_set_on = IsoDateField(null=True)  # 15 住所を定めた日
    notified_on = IsoDateField(null=True)  # 16 届出の年月日
    previous_municipality_code = peewee.CharField(
        max_length=6, null=True
    )  # 17 市町村コード（転入前）
    previous_address = peewee.TextField(null=True)  # 18 転入前住所
    previous_address_gaiji_count = peewee.IntegerField(default=0)  # 19 外字数（転入前住所）
    relationship = peewee.TextField(null=True)  # 20 続柄
    change_reason = EnumField(ChangeReason)  # 21 異動事由
    change_date = IsoDateField()  # 22 異動年月日
    change_reason_detail = peewee.TextField(null=True)  # 23 異動事由詳細
    old_resident_code = peewee.CharField(max_length=11, null=True)  # 24 旧住民票コード
    resident_code_since = IsoDateField(null=True)  # 25 住民票コード使用年月日
    request_number = peewee.CharField(max_length=64, null=True)  # 26 依頼管理番号
    operator_id = peewee.CharField(max_length=64, null=True)  # 27 操作者ＩＤ
    terminal_id = peewee.CharField(max_length=64, null=True)  # 28 操作端末ＩＤ
    sequence = peewee.BigIntegerField()  # 29 更新順番号
    recovery_sequence = peewee.BigIntegerField(null=True)  # 30 異常時更新順番号
    update_prohibited = peewee.BooleanField(default=False)  # 31 更新禁止フラグ
    prospective = peewee.BooleanField(default=False)  # 32 予定者フラグ
    locked = peewee.BooleanField(default=False)  # 33 排他フラグ
    gaiji_flag = peewee.BooleanField(default=False)  # 34 外字フラグ
    record_status = EnumField(RecordStatus)  # 35 レコード状況フラグ
    timestamp = UtcMicrosField()  # 36 タイムスタンプ
    former_surname_kanji = peewee.TextField(null=True)  # 37 旧氏　漢字
    former_surname_gaiji_count = peewee.IntegerField(default=0)  # 38 旧氏　外字数
    former_surname_kana = peewee.TextField(null=True)  # 39 旧氏　ふりがな
    former_surname_gaiji_serial = peewee.IntegerField(default=0)  # 40 旧氏　外字変更連番


class IdentityRow(_IdentityColumns):
    """本人確認情報ファイル (file 2): one current row per 住民票コード, removed persons included.

    No 市町村コード index: a CS holds one municipality, so it would not select anything.
    """

    id = peewee.BigAutoField()
    prefix_columns = ("name_kana_seion", "name_kanji")

    class Meta:
        table_name = "identity"
        indexes = (
            (("resident_code",), True),
            # not unique: a 住民票コード変更 may briefly leave the old (消除) row with the number;
            # uniqueness of issued numbers is national's IssuedNumberRow.
            (("individual_number",), False),
            # 生年月日 drives every 氏名+生年月日 search; carrying the names lets SQLite test them
            # inside the index instead of fetching some 30 rows per date at random
            (("birth_date", "name_kana_seion", "name_kanji"), False),
        )


class IdentityHistoryRow(_IdentityColumns):
    """本人確認情報の履歴: every saved version of a person's record, numbered per 住民票コード.

    The last version equals the current row; the earlier ones are the 修正前の本人確認情報
    kept 150 years (施行令34条3項) and purged by store/retention.py by `recorded_at`.
    """

    id = peewee.BigAutoField()
    history_no = peewee.IntegerField()
    recorded_at = UtcMicrosField(index=True)

    class Meta:
        table_name = "identity_history"
        indexes = ((("resident_code", "history_no"), True),)


class PendingMoveOutRow(BaseModel):
    """転出証明書情報 received ahead of a 特例転入 (CS-3), until the 転入 or the purge period."""

    id = peewee.BigAutoField()
    resident_code = peewee.CharField(max_length=11, index=True)
    from_municipality = peewee.CharField(max_length=6)
    content = MsgpackField()
    received_at = UtcMicrosField(index=True)
    status = peewee.CharField(max_length=8, default="pending", index=True)  # pending/matched/purged

    class Meta:
        table_name = "pending_move_out"


class DestinationRow(BaseModel):
    """送付先情報ファイル (file 3): the 67 items, unedited (V-9), kept until a day after sending."""

    id = peewee.BigAutoField()
    management_number = peewee.CharField(max_length=64, unique=True)  # 1 送付先管理番号
    resident_code = peewee.CharField(max_length=11, index=True)  # 38 住民票コード
    content = MsgpackField()  # all 67 items as received (records.destination_to_dict)
    received_at = UtcMicrosField(index=True)
    sent_at = UtcMicrosField(null=True, index=True)
    acknowledged_at = UtcMicrosField(null=True)

    class Meta:
        table_name = "destination"


# --- 都道府県知事保存 / 機構保存本人確認情報 (the provided copies) -----------------------------


class _ProvidedColumns(BaseModel):
    """The provided items (seed-digest §3.4) plus the search, ownership and ordering keys."""

    resident_code = peewee.CharField(max_length=11)  # 住民票コード
    name_kanji = peewee.TextField()  # 氏名
    name_kana = peewee.TextField()  # ふりがな氏名
    name_kana_seion = peewee.TextField()  # 清音化かな氏名
    birth_date = IsoDateField()  # 生年月日
    sex = EnumField(Sex)  # 性別
    address = peewee.TextField()  # 住所
    individual_number = peewee.CharField(max_length=12, null=True)  # 個人番号
    change_reason = EnumField(ChangeReason)  # 異動事由
    change_date = IsoDateField()  # 異動年月日
    municipality_code = peewee.CharField(max_length=6)  # 市町村コード
    record_status = EnumField(RecordStatus)  # レコード状況フラグ
    sequence = peewee.BigIntegerField()  # 更新順番号
    old_resident_code = peewee.CharField(max_length=11, null=True)  # 旧住民票コード
    previous_municipality_code = peewee.CharField(max_length=6, null=True)  # 転入前 (order)
    became_resident_on = IsoDateField(null=True)  # 住民となった日 (order across cities)


class _ProvidedCurrent(_ProvidedColumns):
    id = peewee.BigAutoField()
    prefix_columns = ("name_kana_seion", "name_kanji")


class _ProvidedHistory(_ProvidedColumns):
    id = peewee.BigAutoField()
    history_no = peewee.IntegerField()
    recorded_at = UtcMicrosField(index=True)


def _current_indexes() -> tuple[tuple[tuple[str, ...], bool], ...]:
    return (
        (("resident_code",), True),
        (("individual_number",), False),
        (("birth_date", "name_kana_seion", "name_kanji"), False),
        (("municipality_code",), False),
    )


class PrefectureIdentityRow(_ProvidedCurrent):
    """都道府県知事保存本人確認情報: the prefecture's copy (住基法30条の6/30条の7)."""

    class Meta:
        table_name = "prefecture_identity"
        indexes = _current_indexes()


_VERSION_SEEN = (("resident_code", "municipality_code", "sequence"), False)
"""The tiers' duplicate probe (store.identity.provided_version_seen) on every notice: answered
from this index alone, however many versions of the person the history holds. Through the
(resident_code, history_no) index it read each of them, and its cost grew with the file."""


class PrefectureIdentityHistoryRow(_ProvidedHistory):
    class Meta:
        table_name = "prefecture_identity_history"
        indexes = ((("resident_code", "history_no"), True), _VERSION_SEEN)


class NationalIdentityRow(_ProvidedCurrent):
    """機構保存本人確認情報: national's copy (住基法30条の9)."""

    class Meta:
        table_name = "national_identity"
        indexes = _current_indexes()


class NationalIdentityHistoryRow(_ProvidedHistory):
    class Meta:
        table_name = "national_identity_history"
        indexes = ((("resident_code", "history_no"), True), _VERSION_SEEN)


# --- national: numbers and codes -------------------------------------------------------------


class IssuedNumberRow(BaseModel):
    """個人番号 ever issued (番号法8条): unique for ever, never reused, even after death."""

    individual_number = peewee.CharField(max_length=12, primary_key=True)
    resident_code = peewee.CharField(max_length=11, index=True)
    issued_at = UtcMicrosField()

    class Meta:
        table_name = "issued_number"


class ResidentCodeRow(BaseModel):
    """住民票コード allocation (住基法30条の7): offered to a CS, assigned, or retired."""

    code = peewee.CharField(max_length=11, primary_key=True)
    status = peewee.CharField(max_length=8, index=True)  # offered / assigned / retired
    municipality_code = peewee.CharField(max_length=6, null=True)
    updated_at = UtcMicrosField()

    class Meta:
        table_name = "resident_code"
