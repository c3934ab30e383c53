"""登録時チェック (checks at CS registration): format and logic checks of CS-1 updates and more.

The seed (§4.1) asks that only checked information is registered and notified onward (V-4):
「項目のフォーマットチェックや論理チェック…がなされた情報を通知することをシステム上で担保する」.
Every check here is a plain function returning ``RuleViolation``s, so that a handler can refuse
with all reasons at once and a test can name the rule it expects. Rule ids:

- V-1 フォーマットチェック: each item's format (table ``FORMATS``) and the items a 異動事由
  requires. The seed gives no formats (§7.6-10); ours are documented beside each item.
- V-2 論理チェック (the seed's example: 転入 on a current resident). Generalised to "the 異動事由
  must fit the person's state and the update's own items": a creating reason needs a person who
  is not a current resident; every other reason needs a current one (転出取消 a removed one);
  plus each reason's own consistency (転入 from our own municipality is a 転居, a 出生's 住民と
  なった日 is the birth date, a 転居 must change the address …).
- V-3 論理チェック (the seed's example: 転居 changing more than the address). Generalised to
  "each 異動事由 may change only its own items": an item sent with its current value is not a
  change, so the registry may send whole records.
- V-5 入手項目の限定: keys outside ``UPDATE_WHITELIST`` (unknown keys included).
- V-7 検索条件: 氏名 plus 住所 or 生年月日 (``validate_search``).
- V-10 removed persons are never numbered; V-11 a number answer must be valid and belong to the
  person (``validate_number_answer``; a 個人番号指定 update is V-10-checked too).
- V-13 順序制御: a person's updates apply in 更新順番号 order; 更新禁止フラグ and 排他フラグ
  refuse updates.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from store.codes import (
    is_valid_individual_number,
    is_valid_municipality_code,
    is_valid_resident_code,
)
from store.kana import count_gaiji, is_kana, to_seion
from store.records import (
    CREATING_REASONS,
    IDENTITY_FIELDS,
    REMOVING_REASONS,
    UPDATE_RECORD_FIELDS,
    UPDATE_WHITELIST,
    ChangeReason,
    IdentityRecord,
    IdentityUpdate,
    RecordStatus,
    Sex,
)


@dataclass(frozen=True, slots=True)
class RuleViolation:
    """One failed check: the seed rule id (V-n), the item concerned (if one) and why."""

    rule: str
    field: str | None
    message: str


# --- V-1: formats ------------------------------------------------------------------------------

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_REQUEST_NUMBER = re.compile(r"[A-Za-z0-9_\-]{1,40}")
_EARLIEST = date(1850, 1, 1)  # 150-year retention: nobody on file was born before this


class _FormatError(ValueError):
    pass


Decoder = Callable[[Any], Any]


def _decode_date(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            parsed = date.fromisoformat(value)
        except ValueError as exc:
            raise _FormatError("not a calendar date") from exc
    else:
        raise _FormatError("expected an ISO date YYYY-MM-DD")
    if parsed < _EARLIEST:
        raise _FormatError(f"before {_EARLIEST.isoformat()}")
    return parsed


def _checked(predicate: Callable[[str], bool], what: str) -> Decoder:
    def decode(value: Any) -> str:
        if not isinstance(value, str) or not predicate(value):
            raise _FormatError(f"expected {what}")
        return value

    return decode


_FORBIDDEN_CHARS = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd]"
)
"""Unicode categories Cc (controls), Cs (surrogates) and Co (private use), which the standard
fixes once and for all; one regex search instead of a category lookup per character (every text
item of every update passes here). tests/store/test_validation.py checks it against
unicodedata over all code points."""


def _text(max_len: int) -> Decoder:
    """Free text: non-empty, no surrounding spaces, no control or format characters."""

    def decode(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise _FormatError("expected non-empty text")
        if value != value.strip():
            raise _FormatError("leading or trailing spaces")
        if len(value) > max_len:
            raise _FormatError(f"longer than {max_len} characters")
        if _FORBIDDEN_CHARS.search(value):
            raise _FormatError("control or private-use characters")
        return value

    return decode


def _kana_text(max_len: int) -> Decoder:
    base = _text(max_len)

    def decode(value: Any) -> str:
        text = base(value)
        if not is_kana(text):
            raise _FormatError("expected kana (katakana or hiragana)")
        return text

    return decode


def _digits(lo: int, hi: int) -> Decoder:
    pattern = re.compile(rf"[0-9]{{{lo},{hi}}}")
    return _checked(lambda s: pattern.fullmatch(s) is not None, f"{lo}–{hi} ASCII digits")


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _FormatError("expected an integer ≥ 1")
    if value >= 2**63:
        raise _FormatError("too large")
    return value


def _enum(cls: type[Sex] | type[ChangeReason]) -> Decoder:
    def decode(value: Any) -> Any:
        try:
            return cls(value)
        except ValueError as exc:
            raise _FormatError(f"expected one of {[m.value for m in cls]}") from exc

    return decode


_resident_code = _checked(is_valid_resident_code, "an 11-digit 住民票コード with check digit")
_municipality = _checked(is_valid_municipality_code, "a 6-digit 市町村コード with check digit")

FORMATS: Mapping[str, Decoder] = {
    "resident_code": _resident_code,
    "name_kanji": _text(64),
    "name_kana": _kana_text(64),
    "birth_date": _decode_date,
    "sex": _enum(Sex),  # JIS X 0303: 1, 2, 9
    "municipality_code": _municipality,
    "oaza_code": _digits(1, 12),  # 大字・字コード: the seed gives no length
    "postcode": _digits(7, 7),  # no hyphen
    "address": _text(200),
    "individual_number": _checked(is_valid_individual_number, "a 12-digit 個人番号"),
    "became_resident_on": _decode_date,
    "address_set_on": _decode_date,
    "notified_on": _decode_date,
    "previous_municipality_code": _municipality,
    "previous_address": _text(200),  # for 国外転入, the country
    "relationship": _text(20),
    "change_reason": _enum(ChangeReason),
    "change_date": _decode_date,
    "change_reason_detail": _text(200),
    "old_resident_code": _resident_code,
    "resident_code_since": _decode_date,
    "request_number": _checked(
        lambda s: _REQUEST_NUMBER.fullmatch(s) is not None, "1–40 of A–Z a–z 0–9 _ -"
    ),
    "sequence": _positive_int,
    "recovery_sequence": _positive_int,
    "former_surname_kanji": _text(32),
    "former_surname_kana": _kana_text(32),
}
"""V-1: the decoder of each whitelisted item (raises on a bad format, returns the typed value)."""

NON_NULLABLE: frozenset[str] = frozenset(
    {
        "resident_code",
        "name_kanji",
        "name_kana",
        "birth_date",
        "sex",
        "municipality_code",
        "address",
        "change_reason",
        "change_date",
        "request_number",
        "sequence",
    }
)
"""Items a record always has: sending ``None`` for them is a format error, not a clearing."""

# --- per-reason rules --------------------------------------------------------------------------

ALWAYS_ALLOWED: frozenset[str] = frozenset({"notified_on", "change_reason_detail"})
"""Items any 異動 may set: every 届出 has its own 届出の年月日 and 異動事由詳細."""

ADDRESS_ITEMS: frozenset[str] = frozenset({"address", "postcode", "oaza_code", "address_set_on"})
"""V-3: what a 転居 may change (住所, 郵便番号, 大字・字コード, 住所を定めた日; the 外字数 follows
the address because the CS derives it)."""

CREATE_REQUIRED: frozenset[str] = frozenset(
    {
        "name_kanji",
        "name_kana",
        "birth_date",
        "sex",
        "municipality_code",
        "address",
        "became_resident_on",
        "address_set_on",
        "relationship",
    }
)


@dataclass(frozen=True, slots=True)
class ReasonRule:
    """What one 異動事由 demands.

    ``state`` is the person's required state: "new" (no current resident; a removed or, for
    転入, a prospective record may be re-used), "unborn" (no record at all), "current" or
    "removed". ``allowed`` are the items the reason may change, ``required`` those it must send
    (non-null), ``forbidden`` those it must not carry at all, not even as ``None``.
    """

    state: str
    allowed: frozenset[str]
    required: frozenset[str] = frozenset()
    forbidden: frozenset[str] = frozenset()


_CREATE_ALLOWED = UPDATE_RECORD_FIELDS - {"old_resident_code"}
_CORRECTABLE = UPDATE_RECORD_FIELDS - {
    "individual_number",  # 個人番号指定 / 個人番号変更
    "old_resident_code",  # 住民票コード変更
    "resident_code_since",
}

REASON_RULES: Mapping[ChangeReason, ReasonRule] = {
    ChangeReason.MOVE_IN: ReasonRule(
        "new",
        _CREATE_ALLOWED,
        CREATE_REQUIRED | {"previous_municipality_code", "previous_address", "notified_on"},
    ),
    ChangeReason.MOVE_IN_FROM_ABROAD: ReasonRule(
        "new",
        _CREATE_ALLOWED - {"previous_municipality_code"},
        CREATE_REQUIRED | {"previous_address", "notified_on"},
        forbidden=frozenset({"previous_municipality_code"}),
    ),
    ChangeReason.BIRTH: ReasonRule(
        "unborn",
        _CREATE_ALLOWED - {"previous_municipality_code", "previous_address", "individual_number"},
        CREATE_REQUIRED,
        forbidden=frozenset({"previous_municipality_code", "previous_address"}),
    ),
    ChangeReason.ENTRY_BY_AUTHORITY: ReasonRule("new", _CREATE_ALLOWED, CREATE_REQUIRED),
    ChangeReason.MOVE_OUT: ReasonRule("current", ALWAYS_ALLOWED),
    ChangeReason.MOVE_OUT_ABROAD: ReasonRule("current", ALWAYS_ALLOWED),
    ChangeReason.DEATH: ReasonRule("current", ALWAYS_ALLOWED),
    ChangeReason.DECLARED_MISSING: ReasonRule("current", ALWAYS_ALLOWED),
    ChangeReason.REMOVAL_BY_AUTHORITY: ReasonRule("current", ALWAYS_ALLOWED),
    ChangeReason.MOVE_WITHIN: ReasonRule(
        "current", ALWAYS_ALLOWED | ADDRESS_ITEMS, frozenset({"address", "address_set_on"})
    ),
    ChangeReason.ADDRESS_RENAMED: ReasonRule(
        "current",
        ALWAYS_ALLOWED | {"address", "postcode", "oaza_code"},
        frozenset({"address"}),
    ),
    ChangeReason.CORRECTION_BY_AUTHORITY: ReasonRule("current", _CORRECTABLE),
    ChangeReason.RESIDENT_CODE_CHANGE: ReasonRule(
        "current", ALWAYS_ALLOWED | {"old_resident_code"}, frozenset({"old_resident_code"})
    ),
    ChangeReason.NUMBER_ASSIGNMENT: ReasonRule(
        "current", ALWAYS_ALLOWED | {"individual_number"}, frozenset({"individual_number"})
    ),
    ChangeReason.NUMBER_CHANGE: ReasonRule(
        "current", ALWAYS_ALLOWED | {"individual_number"}, frozenset({"individual_number"})
    ),
    ChangeReason.MOVE_OUT_CANCELLED: ReasonRule("removed", ALWAYS_ALLOWED),
}
"""Each 異動事由's rule (state, changeable, required and forbidden items)."""


# --- the main entry: validate_update ----------------------------------------------------------


def _decode_fields(
    raw: Mapping[str, Any],
) -> tuple[dict[str, Any], list[RuleViolation]]:
    """V-5 then V-1 over every key: the typed values of the good ones and the violations."""
    values: dict[str, Any] = {}
    violations: list[RuleViolation] = []
    for key, value in raw.items():
        if key not in UPDATE_WHITELIST:
            where = "a CS-managed item" if key in IDENTITY_FIELDS else "not an item"
            violations.append(
                RuleViolation("V-5", str(key), f"{key!s} may not be sent by the registry ({where})")
            )
            continue
        if value is None:
            if key in NON_NULLABLE:
                violations.append(RuleViolation("V-1", key, f"{key} may not be null"))
            else:
                values[key] = None
            continue
        try:
            values[key] = FORMATS[key](value)
        except _FormatError as exc:
            violations.append(RuleViolation("V-1", key, f"{key}: {exc}"))
    for key in ("resident_code", "change_reason", "change_date", "request_number", "sequence"):
        if key not in raw:
            violations.append(RuleViolation("V-1", key, f"{key} is required"))
    return values, violations


def _state_violations(
    reason: ChangeReason, rule: ReasonRule, current: IdentityRecord | None
) -> list[RuleViolation]:
    """V-2 (and V-10 for numbering a removed person): does the person's state fit the reason?"""
    label = reason.value
    if rule.state == "unborn":
        if current is not None:
            return [
                RuleViolation("V-2", "resident_code", f"{label}: the person is already on file")
            ]
        return []
    if rule.state == "new":
        if current is None or not current.is_current:
            return []
        if reason is ChangeReason.MOVE_IN and current.prospective:
            return []  # 特例転入: the 転出証明書情報 arrived ahead as a 予定者
        return [RuleViolation("V-2", "resident_code", f"{label}: the person is a current resident")]
    if current is None:
        return [RuleViolation("V-2", "resident_code", f"{label}: no such person on file")]
    if rule.state == "removed":
        if current.is_current:
            return [RuleViolation("V-2", "resident_code", f"{label}: the person is not removed")]
        if current.change_reason not in (ChangeReason.MOVE_OUT, ChangeReason.MOVE_OUT_ABROAD):
            return [
                RuleViolation(
                    "V-2", "change_reason", f"{label}: the removal was not a 転出 but a "
                    f"{current.change_reason.value}"
                )
            ]  # fmt: skip
        return []
    # state == "current"
    if not current.is_current:
        rule_id = "V-10" if reason is ChangeReason.NUMBER_ASSIGNMENT else "V-2"
        return [RuleViolation(rule_id, "resident_code", f"{label}: the person has been removed")]
    if current.prospective:
        return [RuleViolation("V-2", "resident_code", f"{label}: the person is only a 予定者")]
    return []


def _sequence_violations(
    values: Mapping[str, Any], current: IdentityRecord | None
) -> list[RuleViolation]:
    """V-13: 更新禁止フラグ, 排他フラグ and 更新順番号 order.

    A normal update needs a 更新順番号 greater than the record's. A recovery-mode update
    (異常時更新順番号 set) may re-use the record's 更新順番号 when its 異常時更新順番号 is greater
    than the record's, so that a recovery replay can correct the last update in place.
    """
    if current is None:
        return []
    out: list[RuleViolation] = []
    if current.update_prohibited:
        out.append(RuleViolation("V-13", "update_prohibited", "the record is frozen (更新禁止)"))
    if current.locked:
        out.append(RuleViolation("V-13", "locked", "the record is locked by another update"))
    sequence = values.get("sequence")
    if isinstance(sequence, int):
        recovery = values.get("recovery_sequence")
        in_order = sequence > current.sequence or (
            recovery is not None
            and sequence == current.sequence
            and (current.recovery_sequence is None or recovery > current.recovery_sequence)
        )
        if not in_order:
            out.append(
                RuleViolation(
                    "V-13",
                    "sequence",
                    f"更新順番号 {sequence} is not after the record's {current.sequence}",
                )
            )
    return out


def _changed(name: str, value: Any, current: IdentityRecord | None) -> bool:
    return current is None or getattr(current, name) != value


def _field_violations(
    reason: ChangeReason,
    rule: ReasonRule,
    changes: Mapping[str, Any],
    current: IdentityRecord | None,
    creating: bool,
) -> list[RuleViolation]:
    """V-1 (required items) and V-3 (items the reason may not change)."""
    out: list[RuleViolation] = []
    label = reason.value
    for name in sorted(rule.required):
        if changes.get(name) is None:
            out.append(RuleViolation("V-1", name, f"{label} requires {name}"))
    for name in sorted(rule.forbidden & changes.keys()):
        out.append(RuleViolation("V-3", name, f"{label} may not carry {name}"))
    for name, value in sorted(changes.items()):
        if name in rule.allowed or name in rule.forbidden:
            continue
        if creating or _changed(name, value, current):
            out.append(RuleViolation("V-3", name, f"{label} may not change {name}"))
    return out


def _merged(name: str, changes: Mapping[str, Any], current: IdentityRecord | None) -> Any:
    if name in changes:
        return changes[name]
    return getattr(current, name) if current is not None else None


def _logic_violations(
    reason: ChangeReason,
    update: Mapping[str, Any],
    changes: Mapping[str, Any],
    current: IdentityRecord | None,
) -> list[RuleViolation]:
    """V-2: each reason's own consistency, on the record as it would be after the update."""
    out: list[RuleViolation] = []
    change_date: date | None = update.get("change_date")
    resident_code = update.get("resident_code")
    birth = _merged("birth_date", changes, current)

    def bad(field: str, message: str) -> None:
        out.append(RuleViolation("V-2", field, f"{reason.value}: {message}"))

    if (
        current is not None
        and reason is not ChangeReason.RESIDENT_CODE_CHANGE
        and resident_code is not None
        and resident_code != current.resident_code
    ):
        bad("resident_code", "住民票コード does not match the record")
    if change_date is not None and birth is not None and change_date < birth:
        bad("change_date", "異動年月日 before the birth date")
    for name in ("became_resident_on", "address_set_on", "notified_on"):
        on = changes.get(name)
        if on is not None and birth is not None and on < birth:
            bad(name, f"{name} before the birth date")
    if reason is ChangeReason.BIRTH:
        if changes.get("became_resident_on") not in (None, birth):
            bad("became_resident_on", "住民となった日 of a birth is the birth date")
        if change_date is not None and birth is not None and change_date != birth:
            bad("change_date", "異動年月日 of a birth is the birth date")
    if reason is ChangeReason.MOVE_IN:
        previous = changes.get("previous_municipality_code")
        if previous is not None and previous == _merged("municipality_code", changes, current):
            bad("previous_municipality_code", "a move from our own municipality is a 転居")
    moves_address = reason in (ChangeReason.MOVE_WITHIN, ChangeReason.ADDRESS_RENAMED)
    if moves_address and current is not None and changes.get("address") == current.address:
        bad("address", "the address does not change")
    corrected = [
        n for n, v in changes.items() if n not in ALWAYS_ALLOWED and _changed(n, v, current)
    ]
    if reason is ChangeReason.CORRECTION_BY_AUTHORITY and not corrected:
        bad("change_reason", "nothing is corrected")
    if reason is ChangeReason.RESIDENT_CODE_CHANGE and current is not None:
        if changes.get("old_resident_code") not in (None, current.resident_code):
            bad("old_resident_code", "旧住民票コード is not the record's code")
        if resident_code == current.resident_code:
            bad("resident_code", "the new 住民票コード equals the old one")
    numbered = current is not None and current.individual_number is not None
    if reason is ChangeReason.NUMBER_ASSIGNMENT and numbered:
        bad("individual_number", "already numbered (use 個人番号変更)")
    if reason is ChangeReason.NUMBER_CHANGE and current is not None:
        if current.individual_number is None:
            bad("individual_number", "not numbered yet (use 個人番号指定)")
        elif changes.get("individual_number") == current.individual_number:
            bad("individual_number", "the new 個人番号 equals the old one")
    return out


def validate_update(
    raw: Mapping[str, Any], current: IdentityRecord | None
) -> tuple[IdentityUpdate | None, list[RuleViolation]]:
    """Check a CS-1 update from the wire against the person's current record.

    ``current`` is the record found under ``records.lookup_code(raw)`` (the old code for a
    住民票コード変更), or ``None``. Returns the typed update and no violations, or ``None`` and
    every violation found (V-5, V-1, V-13, V-2, V-3, V-10), so the registry learns all at once.
    """
    values, violations = _decode_fields(raw)
    reason = values.get("change_reason")
    if not isinstance(reason, ChangeReason):
        return None, violations
    rule = REASON_RULES[reason]
    changes = {k: v for k, v in values.items() if k in UPDATE_RECORD_FIELDS}
    state = _state_violations(reason, rule, current)
    violations += state
    violations += _sequence_violations(values, current)
    creating = reason in CREATING_REASONS
    violations += _field_violations(reason, rule, changes, current, creating)
    if not state:
        violations += _logic_violations(reason, values, changes, current)
    if violations:
        return None, violations
    return (
        IdentityUpdate(
            resident_code=values["resident_code"],
            change_reason=reason,
            change_date=values["change_date"],
            request_number=values["request_number"],
            sequence=values["sequence"],
            recovery_sequence=values.get("recovery_sequence"),
            changes=changes,
        ),
        [],
    )


# --- applying a checked update ---------------------------------------------------------------


def apply_update(
    current: IdentityRecord | None,
    update: IdentityUpdate,
    *,
    now: datetime,
    operator_id: str | None,
    terminal_id: str | None,
) -> IdentityRecord:
    """The record after a checked update (pure; the caller stores it and keeps the old one as
    history).

    The CS-managed items are derived here, never taken from the registry: 清音化かな氏名 from the
    kana name, every 外字数 and the 外字フラグ from the texts, the レコード状況 from the reason
    (removing reasons → 消除, all others → 現存), the 予定者 and 排他 flags cleared, the
    timestamp from ``now``. A 住民票コード変更 keeps the replaced code in 旧住民票コード and dates
    the new one from the 異動年月日. 旧氏の外字変更連番 goes up by one whenever the former
    surname changes to a text containing 外字. A record re-created over a removed (or 予定者)
    row starts from that row, so what travels with the person (個人番号, 旧氏) is kept unless
    the update sends it.
    """
    reason = update.change_reason
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if current is None and reason not in CREATING_REASONS:
        raise ValueError(f"{reason.value} needs a current record")
    values: dict[str, Any] = {}
    if current is not None:
        values.update({name: getattr(current, name) for name in IDENTITY_FIELDS})
    values.update(update.changes)
    if reason is ChangeReason.RESIDENT_CODE_CHANGE and current is not None:
        values["old_resident_code"] = current.resident_code
        values["resident_code_since"] = update.change_date
    elif reason in CREATING_REASONS and values.get("resident_code_since") is None:
        values["resident_code_since"] = update.change_date
    former_before = current.former_surname_kanji if current is not None else None
    former = values.get("former_surname_kanji")
    serial = values.get("former_surname_gaiji_serial") or 0
    if former != former_before and count_gaiji(former) > 0:
        serial += 1
    counts = {
        "name_gaiji_count": count_gaiji(values["name_kanji"]),
        "address_gaiji_count": count_gaiji(values["address"]),
        "previous_address_gaiji_count": count_gaiji(values.get("previous_address")),
        "former_surname_gaiji_count": count_gaiji(former),
    }
    values.update(counts)
    values.update(
        resident_code=update.resident_code,
        name_kana_seion=to_seion(values["name_kana"]),
        gaiji_flag=any(counts.values()),
        former_surname_gaiji_serial=serial,
        change_reason=reason,
        change_date=update.change_date,
        request_number=update.request_number,
        sequence=update.sequence,
        recovery_sequence=update.recovery_sequence,
        operator_id=operator_id,
        terminal_id=terminal_id,
        timestamp=now.astimezone(UTC),
        record_status=RecordStatus.REMOVED if reason in REMOVING_REASONS else RecordStatus.CURRENT,
        prospective=False,
        locked=False,
        update_prohibited=values.get("update_prohibited", False),
    )
    return IdentityRecord(**values)


# --- V-10 / V-11: numbering -------------------------------------------------------------------

FOUR_INFO: tuple[str, ...] = ("name_kanji", "birth_date", "sex", "address")
"""4情報: 氏名・生年月日・性別・住所."""


def _comparable_text(value: Any) -> str:
    """NFKC with all whitespace removed: 「山田　太郎」 and 「山田 太郎」 are the same name."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", str(value)) if not ch.isspace())


def validate_number_answer(
    record: IdentityRecord, answer_fields: Mapping[str, Any], number: str
) -> list[RuleViolation]:
    """Check a 個人番号 answered by 機構 / national before it is assigned to ``record``.

    V-10: a person removed before numbering is never numbered. V-11: the number must be a valid
    個人番号, the answer must carry all 4情報 and they must match the record (names and
    addresses compared after NFKC with spaces removed; dates and sex exactly), a 住民票コード in
    the answer must be the record's, and a person who already has a number must get that same
    number back.
    """
    out: list[RuleViolation] = []
    if not record.is_current:
        out.append(
            RuleViolation("V-10", "record_status", "the person was removed before numbering")
        )
    if not is_valid_individual_number(number):
        out.append(RuleViolation("V-11", "individual_number", "not a valid 個人番号"))
    elif record.individual_number is not None and record.individual_number != number:
        out.append(RuleViolation("V-11", "individual_number", "differs from the number on record"))
    code = answer_fields.get("resident_code")
    if code is not None and code != record.resident_code:
        out.append(RuleViolation("V-11", "resident_code", "answer is for another 住民票コード"))
    for name in FOUR_INFO:
        if answer_fields.get(name) is None:
            out.append(RuleViolation("V-11", name, f"answer lacks {name}"))
            continue
        value = answer_fields[name]
        try:
            if name == "birth_date":
                matches = _decode_date(value) == record.birth_date
            elif name == "sex":
                matches = Sex(value) is record.sex
            else:
                matches = _comparable_text(value) == _comparable_text(getattr(record, name))
        except (_FormatError, ValueError):
            matches = False
        if not matches:
            out.append(RuleViolation("V-11", name, f"{name} does not match the person"))
    return out


# --- V-7: search conditions -------------------------------------------------------------------

SEARCH_KEYS: frozenset[str] = frozenset({"name_kanji", "name_kana", "address", "birth_date", "sex"})


def validate_search(criteria: Mapping[str, Any]) -> list[RuleViolation]:
    """CS-4 4情報 search: 氏名 (漢字 or かな) plus 住所 or 生年月日; 性別 only narrows.

    The seed's 「性別以外の２情報以上」 is read as its two examples (氏名+住所, 氏名+生年月日):
    住所+生年月日 without a name is refused. Empty strings count as absent. Values must have
    the format of the item (V-1); keys other than the 4情報 are refused (V-7), because a search
    must return exactly what its stated conditions match (V-8).
    """
    out: list[RuleViolation] = []
    given: set[str] = set()
    for key, value in criteria.items():
        if key not in SEARCH_KEYS:
            out.append(RuleViolation("V-7", str(key), f"{key!s} is not a search condition"))
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        given.add(key)
        try:
            if key == "birth_date":
                _decode_date(value)
            elif key == "sex":
                Sex(value)
            elif key == "name_kana":
                if not isinstance(value, str) or not is_kana(value):
                    raise _FormatError("expected kana")
            elif not isinstance(value, str) or len(value) > 200:
                raise _FormatError("expected text")
        except (_FormatError, ValueError) as exc:
            out.append(RuleViolation("V-1", key, f"{key}: {exc}"))
    if not given & {"name_kanji", "name_kana"}:
        out.append(RuleViolation("V-7", "name", "氏名 is required"))
    if not given & {"address", "birth_date"}:
        out.append(RuleViolation("V-7", None, "住所 or 生年月日 is required besides 氏名"))
    return out
