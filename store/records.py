"""本人確認情報・送付先情報 (identity and destination records): the shapes passed around.

These frozen dataclasses are the one vocabulary shared by the peewee models, the node handlers,
the population generator and the terminal, so that nobody re-invents the 40 items of file (2)
or the 67 items of file (3) (seed-digest §3.2, §3.3). Field names are English; each carries the
seed's item number and Japanese label in a comment. Every dataclass is ``kw_only`` so that the
fields can stay in seed order while optional items carry defaults.

Conventions (chosen here, because the seed gives no formats, §7.6-10):

- codes (住民票コード, 個人番号, 市町村コード, 郵便番号, 大字・字コード) are digit strings,
  never ints, so that leading zeros survive;
- an absent optional item is ``None``, never ``""``;
- dates are ``datetime.date``; the one timestamp (item 36) is an aware UTC ``datetime``;
- the dict helpers turn dates into ISO strings and enums into their values so that the result
  is plain msgpack (str/int/bool/None/bytes), and read the same back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import partial
from types import MappingProxyType
from typing import Any, TypeVar, get_type_hints


class Sex(StrEnum):
    """性別, coded as JIS X 0303 (個人の性別コード)."""

    MALE = "1"
    FEMALE = "2"
    NOT_APPLICABLE = "9"  # 適用不能


class RecordStatus(StrEnum):
    """レコード状況フラグ (item 35).

    ``CURRENT`` and ``REMOVED`` are the states a person's live row takes. ``HISTORY`` marks a
    superseded version (修正前の本人確認情報) kept 150 years under 施行令34条3項; only history
    rows carry it, and ``validation.apply_update`` never produces it.
    """

    CURRENT = "現存"
    REMOVED = "消除"
    HISTORY = "履歴"


class ChangeReason(StrEnum):
    """異動事由 (item 21): why the existing registry sent an update (CS-1).

    Each reason has its own rules in ``store.validation`` (must the person exist, be current,
    which fields may change). Grouped by effect:

    Creating a record (the person must not be a current resident, V-2):
      転入 — move-in from another municipality (previous municipality code + address required);
      国外転入 — move-in from abroad (previous address is the foreign country, no municipality
      code); 出生 — birth (the person must not exist at all); 職権記載 — entry by the mayor's
      own authority (職権), e.g. a resident found living here unregistered.

    Removing a record (the person must be current; the record becomes 消除):
      転出 — move-out to another municipality; 国外転出 — move-out abroad; 死亡 — death;
      失踪宣告 — declared missing by a court (treated like death by the register);
      職権消除 — removal by the mayor's authority (e.g. a resident found not living here).

    Changing a current record:
      転居 — move within the city: only address items change (V-3);
      住居表示変更 — the address is renamed by 住居表示 without a move: address, 大字・字コード
      and postcode only, not 住所を定めた日;
      職権修正 — correction by the mayor's authority (name after marriage, typo fixes …);
      住民票コード変更 — a new 住民票コード chosen from the codes offered by national
      (住基法30条の4);
      個人番号指定 — the first 個人番号 assigned to this person (生成 by 機構, V-10/V-11);
      個人番号変更 — a replacement 個人番号 (番号法7条2項, e.g. after a leak).

    Undoing a removal:
      転出取消 — a 転出 (or 国外転出) withdrawn before the move; the record is current again.
    """

    MOVE_IN = "転入"
    MOVE_IN_FROM_ABROAD = "国外転入"
    BIRTH = "出生"
    ENTRY_BY_AUTHORITY = "職権記載"
    MOVE_OUT = "転出"
    MOVE_OUT_ABROAD = "国外転出"
    DEATH = "死亡"
    DECLARED_MISSING = "失踪宣告"
    REMOVAL_BY_AUTHORITY = "職権消除"
    MOVE_WITHIN = "転居"
    ADDRESS_RENAMED = "住居表示変更"
    CORRECTION_BY_AUTHORITY = "職権修正"
    RESIDENT_CODE_CHANGE = "住民票コード変更"
    NUMBER_ASSIGNMENT = "個人番号指定"
    NUMBER_CHANGE = "個人番号変更"
    MOVE_OUT_CANCELLED = "転出取消"


CREATING_REASONS = frozenset(
    {
        ChangeReason.MOVE_IN,
        ChangeReason.MOVE_IN_FROM_ABROAD,
        ChangeReason.BIRTH,
        ChangeReason.ENTRY_BY_AUTHORITY,
    }
)
"""Reasons that create (or re-create) a person's record."""

REMOVING_REASONS = frozenset(
    {
        ChangeReason.MOVE_OUT,
        ChangeReason.MOVE_OUT_ABROAD,
        ChangeReason.DEATH,
        ChangeReason.DECLARED_MISSING,
        ChangeReason.REMOVAL_BY_AUTHORITY,
    }
)
"""Reasons after which the record is 消除 (removed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityRecord:
    """本人確認情報 (file (2), 40 items): one person's current row in the CS.

    The prefecture and national copies use ``ProvidedIdentity`` instead: they only ever receive
    the provided items (§3.4).
    """

    resident_code: str  # 1 住民票コード (11 digits, last one a check digit)
    name_kanji: str  # 2 漢字氏名
    name_gaiji_count: int = 0  # 3 外字数（氏名）
    name_kana: str  # 4 ふりがな氏名
    name_kana_seion: str  # 5 清音化かな氏名 (store.kana.to_seion of item 4)
    birth_date: date  # 6 生年月日
    sex: Sex  # 7 性別
    municipality_code: str  # 8 市町村コード (6 digits with check digit)
    oaza_code: str | None = None  # 9 大字・字コード
    postcode: str | None = None  # 10 郵便番号 (7 digits, no hyphen)
    address: str  # 11 住所
    address_gaiji_count: int = 0  # 12 外字数（住所）
    individual_number: str | None = None  # 13 個人番号 (12 digits; None before 個人番号指定)
    became_resident_on: date | None = None  # 14 住民となった日
    address_set_on: date | None = None  # 15 住所を定めた日
    notified_on: date | None = None  # 16 届出の年月日
    previous_municipality_code: str | None = None  # 17 市町村コード（転入前）
    previous_address: str | None = None  # 18 転入前住所
    previous_address_gaiji_count: int = 0  # 19 外字数（転入前住所）
    relationship: str | None = None  # 20 続柄
    change_reason: ChangeReason  # 21 異動事由
    change_date: date  # 22 異動年月日
    change_reason_detail: str | None = None  # 23 異動事由詳細
    old_resident_code: str | None = None  # 24 旧住民票コード
    resident_code_since: date | None = None  # 25 住民票コード使用年月日
    request_number: str | None = None  # 26 依頼管理番号
    operator_id: str | None = None  # 27 操作者ＩＤ
    terminal_id: str | None = None  # 28 操作端末ＩＤ
    sequence: int  # 29 更新順番号
    recovery_sequence: int | None = None  # 30 異常時更新順番号
    update_prohibited: bool = False  # 31 更新禁止フラグ
    prospective: bool = False  # 32 予定者フラグ (e.g. awaiting a 特例転入)
    locked: bool = False  # 33 排他フラグ
    gaiji_flag: bool = False  # 34 外字フラグ (any gaiji in items 2, 11, 18, 37)
    record_status: RecordStatus = RecordStatus.CURRENT  # 35 レコード状況フラグ
    timestamp: datetime  # 36 タイムスタンプ (aware, UTC)
    former_surname_kanji: str | None = None  # 37 旧氏　漢字
    former_surname_gaiji_count: int = 0  # 38 旧氏　外字数
    former_surname_kana: str | None = None  # 39 旧氏　ふりがな
    former_surname_gaiji_serial: int = 0  # 40 旧氏　外字変更連番

    @property
    def is_current(self) -> bool:
        return self.record_status is RecordStatus.CURRENT


IDENTITY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(IdentityRecord))
"""The 40 item names in seed order."""

IDENTITY_ITEM_NUMBERS: Mapping[str, int] = MappingProxyType(
    {name: i for i, name in enumerate(IDENTITY_FIELDS, start=1)}
)
"""Item name → the seed's item number (1…40)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvidedIdentity:
    """The provided 本人確認情報 (§3.4): the prefecture's and national's copy, and the body of the
    update notices CS → prefecture → national (住基法30条の6).

    The seed's 8 items plus what the upper levels need to work: the kana name and its 清音化 form
    for 4情報 search at national, the municipality code (which CS owns the person), the record
    status (removed persons stay on file) and the 更新順番号 so that notices apply in order.
    """

    resident_code: str  # 住民票コード
    name_kanji: str  # 氏名
    name_kana: str  # ふりがな氏名 (search)
    name_kana_seion: str  # 清音化かな氏名 (search)
    birth_date: date  # 生年月日
    sex: Sex  # 性別
    address: str  # 住所
    individual_number: str | None = None  # 個人番号
    change_reason: ChangeReason  # 異動事由
    change_date: date  # 異動年月日
    municipality_code: str  # 市町村コード
    record_status: RecordStatus  # レコード状況フラグ
    sequence: int  # 更新順番号
    old_resident_code: str | None = None  # 旧住民票コード (so upper levels can re-key)
    previous_municipality_code: str | None = None  # 市町村コード（転入前） (update order)
    became_resident_on: date | None = None  # 住民となった日 (update order across cities)


PROVIDED_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ProvidedIdentity))


def provided_from(record: IdentityRecord) -> ProvidedIdentity:
    """The provided view of a CS record; nothing outside §3.4 (plus search/ordering keys) leaks."""
    return ProvidedIdentity(**{name: getattr(record, name) for name in PROVIDED_FIELDS})


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationRecord:
    """送付先情報 (file (3), 67 items): one resident's mailing record for 機構 (CS-7).

    Kept as sent (V-9: no editing in transit), so the 項目長 (length) items are stored, not
    derived; ``destination_lengths`` offers the derived values for whoever builds a record.
    """

    destination_id: str  # 1 送付先管理番号
    destination_postcode: str | None = None  # 2 送付先郵便番号
    destination_address_length: int = 0  # 3 送付先住所　漢字項目長
    destination_address: str | None = None  # 4 送付先住所　漢字
    destination_address_gaiji_count: int = 0  # 5 送付先住所　漢字外字数
    destination_name_length: int = 0  # 6 送付先氏名　漢字項目長
    destination_name: str | None = None  # 7 送付先氏名　漢字
    destination_name_gaiji_count: int = 0  # 8 送付先氏名　漢字　外字数
    municipality_code: str  # 9 市町村コード
    municipality_name_length: int = 0  # 10 市町村名　項目長
    municipality_name: str  # 11 市町村名
    municipality_postcode: str | None = None  # 12 市町村郵便番号
    municipality_address_length: int = 0  # 13 市町村住所　項目長
    municipality_address: str | None = None  # 14 市町村住所
    municipality_address_gaiji_count: int = 0  # 15 市町村住所　外字数
    municipality_phone: str | None = None  # 16 市町村電話番号
    pickup_place_name_length: int = 0  # 17 交付場所名　項目長
    pickup_place_name: str | None = None  # 18 交付場所名
    pickup_place_name_gaiji_count: int = 0  # 19 交付場所名　外字数
    pickup_place_postcode: str | None = None  # 20 交付場所郵便番号
    pickup_place_address_length: int = 0  # 21 交付場所住所　項目長
    pickup_place_address: str | None = None  # 22 交付場所住所
    pickup_place_address_gaiji_count: int = 0  # 23 交付場所住所　外字数
    pickup_place_phone: str | None = None  # 24 交付場所電話番号
    delivery_place_name_length: int = 0  # 25 カード送付場所名　項目長
    delivery_place_name: str | None = None  # 26 カード送付場所名
    delivery_place_name_gaiji_count: int = 0  # 27 カード送付場所名　外字数
    delivery_place_postcode: str | None = None  # 28 カード送付場所郵便番号
    delivery_place_address_length: int = 0  # 29 カード送付場所住所　項目長
    delivery_place_address: str | None = None  # 30 カード送付場所住所
    delivery_place_address_gaiji_count: int = 0  # 31 カード送付場所住所　外字数
    delivery_place_phone: str | None = None  # 32 カード送付場所電話番号
    persons_count: int = 1  # 33 対象となる人数
    processed_on: date  # 34 処理年月日
    operator_id: str | None = None  # 35 操作者ＩＤ
    terminal_id: str | None = None  # 36 操作端末ＩＤ
    print_category: str | None = None  # 37 印刷区分
    resident_code: str  # 38 住民票コード
    name_kanji_length: int = 0  # 39 氏名　漢字項目長
    name_kanji: str  # 40 氏名　漢字
    name_gaiji_count: int = 0  # 41 氏名　漢字　外字数
    name_kana_length: int = 0  # 42 氏名　かな項目長
    name_kana: str  # 43 氏名　かな
    postcode: str | None = None  # 44 郵便番号
    address_length: int = 0  # 45 住所　項目長
    address: str  # 46 住所
    address_gaiji_count: int = 0  # 47 住所　外字数
    birth_date: date  # 48 生年月日
    sex: Sex  # 49 性別
    individual_number: str  # 50 個人番号
    foreign_resident_category: str | None = None  # 51 第３０条の４５に規定する区分
    residence_expiry_on: date | None = None  # 52 在留期間の満了の日
    substitute_conversion_result: str | None = None  # 53 代替文字変換結果
    substitute_name_length: int = 0  # 54 代替文字氏名　項目長
    substitute_name: str | None = None  # 55 代替文字氏名
    substitute_address_length: int = 0  # 56 代替文字住所　項目長
    substitute_address: str | None = None  # 57 代替文字住所
    substitute_name_positions: str | None = None  # 58 代替文字氏名位置情報
    substitute_address_positions: str | None = None  # 59 代替文字住所位置情報
    gaiji_flag: bool = False  # 60 外字フラグ
    gaiji_pattern: bytes | None = None  # 61 外字パターン (glyph image bytes)
    former_surname_kanji: str | None = None  # 62 旧氏　漢字
    former_surname_gaiji_count: int = 0  # 63 旧氏　外字数
    former_surname_kana: str | None = None  # 64 旧氏　ふりがな
    former_surname_gaiji_serial: int = 0  # 65 旧氏　外字変更連番
    name_roman: str | None = None  # 66 ローマ字　氏名
    former_surname_roman: str | None = None  # 67 ローマ字　旧氏


DESTINATION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(DestinationRecord))
"""The 67 item names in seed order."""

DESTINATION_ITEM_NUMBERS: Mapping[str, int] = MappingProxyType(
    {name: i for i, name in enumerate(DESTINATION_FIELDS, start=1)}
)

DESTINATION_LENGTH_ITEMS: Mapping[str, str] = MappingProxyType(
    {
        "destination_address_length": "destination_address",
        "destination_name_length": "destination_name",
        "municipality_name_length": "municipality_name",
        "municipality_address_length": "municipality_address",
        "pickup_place_name_length": "pickup_place_name",
        "pickup_place_address_length": "pickup_place_address",
        "delivery_place_name_length": "delivery_place_name",
        "delivery_place_address_length": "delivery_place_address",
        "name_kanji_length": "name_kanji",
        "name_kana_length": "name_kana",
        "address_length": "address",
        "substitute_name_length": "substitute_name",
        "substitute_address_length": "substitute_address",
    }
)
"""項目長 item → the text item it measures (in characters)."""


def destination_lengths(values: Mapping[str, Any]) -> dict[str, int]:
    """The 項目長 items for the text items in ``values`` (character counts; absent text → 0)."""
    return {
        length_name: len(values.get(text_name) or "")
        for length_name, text_name in DESTINATION_LENGTH_ITEMS.items()
    }


# --- the existing registry's update (CS-1) ------------------------------------------------------

UPDATE_WHITELIST: frozenset[str] = frozenset(
    {
        "resident_code",
        "name_kanji",
        "name_kana",
        "birth_date",
        "sex",
        "municipality_code",
        "oaza_code",
        "postcode",
        "address",
        "individual_number",
        "became_resident_on",
        "address_set_on",
        "notified_on",
        "previous_municipality_code",
        "previous_address",
        "relationship",
        "change_reason",
        "change_date",
        "change_reason_detail",
        "old_resident_code",
        "resident_code_since",
        "request_number",
        "sequence",
        "recovery_sequence",
        "former_surname_kanji",
        "former_surname_kana",
    }
)
"""V-5: the keys the existing registry may send in a CS-1 update (告示344号 第6-7 as a whitelist).

The registry supplies what it records itself. The CS manages the rest, so that the registry
cannot contradict it:

- derived by the CS: name_kana_seion (to_seion of name_kana), every 外字数 and the 外字フラグ
  (count_gaiji of the texts), former_surname_gaiji_serial (bumped when the former surname's
  gaiji change), record_status (from the change reason);
- set by the CS from the session or clock: operator_id, terminal_id, timestamp;
- CS state, never the registry's: update_prohibited (a CS administrative freeze — letting the
  registry clear it would defeat it), prospective (set by CS-3 for a 特例転入), locked.

The registry does supply the ordering items sequence (更新順番号) and recovery_sequence
(異常時更新順番号, only when replaying in recovery mode), and old_resident_code, which for a
住民票コード変更 names the code being replaced (the record is looked up by it).
"""

UPDATE_REQUIRED: frozenset[str] = frozenset(
    {"resident_code", "change_reason", "change_date", "request_number", "sequence"}
)
"""Keys every update carries, whatever the reason."""

UPDATE_RECORD_FIELDS: frozenset[str] = UPDATE_WHITELIST - {
    "resident_code",
    "change_reason",
    "change_date",
    "request_number",
    "sequence",
    "recovery_sequence",
}
"""Whitelisted keys that go into ``IdentityUpdate.changes`` (items the update may set)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityUpdate:
    """A checked CS-1 update from the existing registry (output of ``validate_update``).

    ``changes`` holds only the items the registry actually sent, already typed (dates as
    ``date``, sex as ``Sex``); an item absent from ``changes`` keeps its current value. This
    partial form is what lets V-3 ask "did a 転居 touch anything but the address?" without
    confusing "not sent" with "cleared". A ``None`` value in ``changes`` clears the item.
    """

    resident_code: str  # 1 住民票コード (for 住民票コード変更: the new code)
    change_reason: ChangeReason  # 21 異動事由
    change_date: date  # 22 異動年月日
    request_number: str  # 26 依頼管理番号
    sequence: int  # 29 更新順番号
    recovery_sequence: int | None = None  # 30 異常時更新順番号
    changes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not isinstance(self.changes, MappingProxyType):
            object.__setattr__(self, "changes", MappingProxyType(dict(self.changes)))


def lookup_code(raw: Mapping[str, Any]) -> str | None:
    """The 住民票コード under which to look up the current record for a raw update.

    A 住民票コード変更 carries the new code in ``resident_code`` and the replaced one in
    ``old_resident_code``; every other reason is keyed by ``resident_code``.
    """
    if raw.get("change_reason") == ChangeReason.RESIDENT_CODE_CHANGE.value:
        code = raw.get("old_resident_code")
    else:
        code = raw.get("resident_code")
    return code if isinstance(code, str) else None


# --- plain dict helpers (msgpack bodies) ---------------------------------------------------------

T = TypeVar("T")


def _encode(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware (UTC)")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _hint_kind(hint: Any) -> Any:
    """The non-None part of a field's type, e.g. ``date`` for ``date | None``."""
    args = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    return args[0] if args else hint


def _decode(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    if kind is datetime:
        if isinstance(value, datetime):
            return value
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError(f"timestamp without a timezone: {value!r}")
        return parsed.astimezone(UTC)
    if kind is date:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        return date.fromisoformat(value)
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return kind(value)
    return value


def _to_dict(obj: Any) -> dict[str, Any]:
    return _dict_codec(type(obj)).to_dict(obj)


def _from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    codec = _dict_codec(cls)
    if not codec.names.issuperset(data):
        unknown = set(data) - codec.names
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    decoders = codec.decoders
    return cls(
        **{
            name: v if v is None or (f := decoders[name]) is None else f(v)
            for name, v in data.items()
        }
    )


_PLAIN = frozenset((str, int, bool, float, type(None)))


def _encode_plain(value: Any) -> Any:
    # a field of a plain type holds a plain value; anything else goes the general way
    return value if type(value) in _PLAIN else _encode(value)


def _encode_enum(value: Any) -> Any:
    return value.value if isinstance(value, StrEnum) else _encode(value)


def _encode_date(value: Any) -> Any:
    return value.isoformat() if type(value) is date else _encode(value)


@dataclass(frozen=True, slots=True)
class _DictCodec:
    """A record class's dict conversions, resolved once from its type hints.

    Every applied update converts a record to and from plain dicts a few times on its way
    through the tiers; resolving each field's type per call cost more than the conversion.
    """

    names: frozenset[str]
    to_dict: Any  # Callable[[record], dict[str, Any]]
    decoders: dict[str, Any]  # field → decode function, None for values taken as they are


_DICT_CODECS: dict[type, _DictCodec] = {}


def _dict_codec(cls: type) -> _DictCodec:
    codec = _DICT_CODECS.get(cls)
    if codec is not None:
        return codec
    hints = _hints(cls)
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    encoders: list[Any] = []
    decoders: dict[str, Any] = {}
    for name in names:
        kind = _hint_kind(hints[name])
        enum = isinstance(kind, type) and issubclass(kind, StrEnum)
        if kind is date:
            encoders.append(_encode_date)
        elif enum:
            encoders.append(_encode_enum)
        elif kind in _PLAIN:
            encoders.append(_encode_plain)
        else:
            encoders.append(_encode)
        converts = enum or kind is datetime or kind is date
        decoders[name] = partial(_decode, kind) if converts else None
    pairs = tuple(zip(names, encoders, strict=True))

    def to_dict(obj: Any) -> dict[str, Any]:
        return {name: enc(getattr(obj, name)) for name, enc in pairs}

    codec = _DICT_CODECS[cls] = _DictCodec(frozenset(names), to_dict, decoders)
    return codec


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def field_kind(cls: type, name: str) -> Any:
    """The value type of a record field (``date`` for ``date | None``); used by validation."""
    return _hint_kind(_hints(cls)[name])


def record_to_dict(record: IdentityRecord) -> dict[str, Any]:
    """All 40 items as plain values (ISO dates, enum values)."""
    return _to_dict(record)


def record_from_dict(data: Mapping[str, Any]) -> IdentityRecord:
    """Inverse of ``record_to_dict``; unknown keys are an error, absent optional items default."""
    return _from_dict(IdentityRecord, data)


def destination_to_dict(record: DestinationRecord) -> dict[str, Any]:
    return _to_dict(record)


def destination_from_dict(data: Mapping[str, Any]) -> DestinationRecord:
    return _from_dict(DestinationRecord, data)


def provided_to_dict(provided: ProvidedIdentity) -> dict[str, Any]:
    return _to_dict(provided)


def provided_from_dict(data: Mapping[str, Any]) -> ProvidedIdentity:
    return _from_dict(ProvidedIdentity, data)


def update_to_dict(update: IdentityUpdate) -> dict[str, Any]:
    """The wire form of an update (what ``validation.validate_update`` reads back)."""
    out = {
        "resident_code": update.resident_code,
        "change_reason": update.change_reason.value,
        "change_date": update.change_date.isoformat(),
        "request_number": update.request_number,
        "sequence": update.sequence,
    }
    if update.recovery_sequence is not None:
        out["recovery_sequence"] = update.recovery_sequence
    out.update({k: _encode(v) for k, v in update.changes.items()})
    return out


def replace(record: T, **changes: Any) -> T:
    """``dataclasses.replace`` re-exported so callers need not import dataclasses for it."""
    return dataclasses.replace(record, **changes)  # type: ignore[type-var]
