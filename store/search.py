"""４情報検索 (4-information search): find persons by 氏名, 住所, 生年月日 and 性別 (CS-4, §4.2).

The store enforces V-7 itself, so that no caller (a terminal screen, a relayed national query)
can run a broad search by forgetting the rule: 氏名 (kanji or kana) is required, plus 住所 or
生年月日; 性別 only narrows a search that is already allowed. seed-digest §4.1 explains why this
reading (and not "any two items other than sex") is the safe one.

Matching (V-8: exactly what the stated conditions match):
    name        prefix of 漢字氏名 (surrounding whitespace ignored)
    name_kana   prefix of 清音化かな氏名, after normalising the input the same way the stored
                item 5 was made (`store.kana.to_seion`), so ガ finds カ and ひらがな finds カタカナ
    address     prefix of 住所
    birth_date  exact
    sex         exact
Removed (消除) persons are excluded unless asked for.

Every condition is served by an index (see store/models.py for the per-engine prefix indexes);
`explain_search` shows the plan, and the tests assert it names an index rather than a scan.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from store.db import RuleViolation, current_database, is_postgresql, translate_errors
from store.identity import Tier, _Codec, _cs, _tier
from store.kana import to_seion
from store.records import IdentityRecord, ProvidedIdentity, RecordStatus, Sex

__all__ = ["MAX_LIMIT", "explain_search", "search_4info", "search_provided"]

MAX_LIMIT = 1_000
"""Upper bound on `limit`, whatever the caller asks: a search is a lookup, not an export."""

_TOP = "\U0010ffff"  # the highest code point: every string with prefix p sorts below p + _TOP


def search_4info(
    name: str | None = None,
    name_kana: str | None = None,
    address: str | None = None,
    birth_date: date | None = None,
    sex: Sex | None = None,
    limit: int = 100,
    *,
    include_removed: bool = False,
) -> list[IdentityRecord]:
    """本人確認情報 matching the conditions, at most `limit`, ordered by kana name then code.

    Raises:
        RuleViolation: rule ``"V-7"`` when 氏名 or both of 住所 / 生年月日 are missing.
    """
    sql, params = _compile(_cs(), name, name_kana, address, birth_date, sex, limit, include_removed)
    return _run(_cs(), sql, params)


def search_provided(
    tier: Tier,
    name: str | None = None,
    name_kana: str | None = None,
    address: str | None = None,
    birth_date: date | None = None,
    sex: Sex | None = None,
    limit: int = 100,
    *,
    include_removed: bool = False,
) -> list[ProvidedIdentity]:
    """The same search over the prefecture's or national's copy (national 4情報 queries)."""
    codec = _tier(tier)
    sql, params = _compile(codec, name, name_kana, address, birth_date, sex, limit, include_removed)
    return _run(codec, sql, params)


def explain_search(tier: Tier | None = None, **criteria: Any) -> list[str]:
    """The database's plan for a search (SQLite EXPLAIN QUERY PLAN details, PostgreSQL EXPLAIN).

    For operators and tests: proves that a search uses the 4情報 indexes instead of a scan.
    """
    codec = _cs() if tier is None else _tier(tier)
    keys = ("name", "name_kana", "address", "birth_date", "sex", "limit", "include_removed")
    unknown = set(criteria) - set(keys)
    if unknown:
        raise TypeError(f"unknown search criteria: {sorted(unknown)}")
    sql, params = _compile(
        codec,
        criteria.get("name"),
        criteria.get("name_kana"),
        criteria.get("address"),
        criteria.get("birth_date"),
        criteria.get("sex"),
        criteria.get("limit", 100),
        criteria.get("include_removed", False),
    )
    db = current_database()
    prefix = "EXPLAIN " if is_postgresql(db) else "EXPLAIN QUERY PLAN "
    with translate_errors():
        rows = db.execute_sql(prefix + sql, params).fetchall()
    return [str(row[-1]) for row in rows]


def _compile(
    codec: _Codec[Any],
    name: str | None,
    name_kana: str | None,
    address: str | None,
    birth_date: date | None,
    sex: Sex | None,
    limit: int,
    include_removed: bool,
) -> tuple[str, list[Any]]:
    name = _given(name)
    raw_kana = _given(name_kana)
    kana = to_seion(raw_kana) or None if raw_kana else None
    address = _given(address)
    if not (name or kana):
        raise RuleViolation("V-7", "氏名（漢字またはかな）を指定してください", "検索条件不足")
    if not (address or birth_date):
        raise RuleViolation(
            "V-7", "氏名に加えて住所または生年月日を指定してください", "検索条件不足"
        )
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")

    # Which index drives the search. PostgreSQL's planner has value histograms and chooses
    # well; SQLite only knows index sizes and would happily range-scan 住所 "宮城県" (the whole
    # city). 生年月日 is the most selective (some 30 people per date in a city of a million),
    # then the kanji name, then the kana; 住所 never drives (it is the second column of the
    # name indexes, so it filters inside them). SQLite's unary "+" keeps a term off an index.
    db = current_database()
    pg = is_postgresql(db)
    p = db.param
    driver = "birth_date" if birth_date is not None else ("name_kanji" if name else "kana")
    where: list[str] = []
    params: list[Any] = []

    def prefix(column: str, value: str, drives: bool) -> None:
        ref = f'"t1"."{column}"'
        if pg:
            # text_pattern_ops index + LIKE with a literal prefix; LIKE's own wildcards escaped.
            escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(f"{ref} LIKE {p}")
            params.append(escaped + "%")
        else:
            # A range on the BINARY-collated index (SQLite's LIKE folds case and skips indexes).
            ref = ref if drives else "+" + ref
            where.append(f"{ref} >= {p} AND {ref} < {p}")
            params.extend((value, value + _TOP))

    if name:
        prefix("name_kanji", name, driver == "name_kanji")
    if kana:
        prefix("name_kana_seion", kana, driver == "kana")
    if address:
        prefix("address", address, False)
    if birth_date is not None:
        where.append(f'"t1"."birth_date" = {p}')
        params.append(birth_date.isoformat())
    if sex is not None:
        where.append(f'"t1"."sex" = {p}')
        params.append(Sex(sex).value)
    if not include_removed:
        where.append(f'"t1"."record_status" = {p}')
        params.append(RecordStatus.CURRENT.value)
    sql = (
        f"{codec.select_sql} WHERE {' AND '.join(where)} "
        f'ORDER BY "t1"."name_kana_seion", "t1"."resident_code" LIMIT {int(limit)}'
    )
    return sql, params


def _given(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip() or None


def _run(codec: _Codec[Any], sql: str, params: list[Any]) -> list[Any]:
    db = current_database()
    with translate_errors():
        rows = db.execute_sql(sql, params).fetchall()
    return [codec.to_record(row) for row in rows]
