"""保存期間: the purge removes exactly what is due, at the boundary, and never the usage log.

The clock is frozen at instants around each boundary. Expected boundaries are worked out by hand
from the rules in store/retention.py's docstring (民法140条/143条 for years, the next business day
for 送付先), not computed by the code under test.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import peewee
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.auditlog import ProvisionLogRow, UsageLogRow, record_provision, verify_usage_chain
from store.calendar import is_business_day
from store.models import (
    BaseModel,
    DestinationRow,
    IdentityHistoryRow,
    IdentityRow,
    NationalIdentityHistoryRow,
    NationalIdentityRow,
    PendingMoveOutRow,
    PrefectureIdentityHistoryRow,
    PrefectureIdentityRow,
)
from store.records import ChangeReason, RecordStatus, Sex
from store.retention import (
    DEFAULT,
    JST,
    PURGE_TASK,
    PURGE_USER,
    RetentionPolicy,
    destination_cutoff,
    destination_due_at,
    purge,
    years_cutoff,
    years_due_at,
)
from store.schema import ROLES

SECOND = timedelta(seconds=1)
# Superseded / removed / provided at 2025-04-01 10:00 JST.
ANCHOR = datetime(2025, 4, 1, 10, 0, tzinfo=JST)
# 初日不算入: the period starts 2025-04-02 and its 150th year ends 2175-04-01 (end of day).
DUE_150 = datetime(2175, 4, 2, 0, 0, tzinfo=JST)
DUE_7 = datetime(2032, 4, 2, 0, 0, tzinfo=JST)

TIERS = {
    "municipal_cs": (IdentityRow, IdentityHistoryRow),
    "prefecture": (PrefectureIdentityRow, PrefectureIdentityHistoryRow),
    "national": (NationalIdentityRow, NationalIdentityHistoryRow),
}


# --- fixtures of data ------------------------------------------------------------------------


def _person(model: type[BaseModel], code: str, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "resident_code": code,
        "name_kanji": "仙台 太郎",
        "name_kana": "せんだい たろう",
        "name_kana_seion": "せんたい たろう",
        "birth_date": date(1950, 1, 2),
        "sex": Sex.MALE,
        "municipality_code": "041009",
        "address": "宮城県仙台市青葉区国分町三丁目7番1号",
        "change_reason": ChangeReason.BIRTH,
        "change_date": date(1950, 1, 2),
        "sequence": 1,
        "record_status": RecordStatus.CURRENT,
        "timestamp": ANCHOR,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if k in model._meta.fields}


def _current(model: type[BaseModel], code: str, **overrides: Any) -> None:
    model.insert(_person(model, code, **overrides)).execute()


def _version(model: type[BaseModel], code: str, no: int, at: datetime, **overrides: Any) -> None:
    model.insert(_person(model, code, history_no=no, recorded_at=at, **overrides)).execute()


def _versions(model: type[BaseModel], code: str) -> list[int]:
    return sorted(r.history_no for r in model.select().where(model.resident_code == code))


def _purge_logs() -> list[UsageLogRow]:
    return list(
        UsageLogRow.select().where(UsageLogRow.task == PURGE_TASK).order_by(UsageLogRow.seq)
    )


def _purge(role: str, now: datetime, policy: RetentionPolicy = DEFAULT) -> dict[str, int]:
    return purge(role, now=now, policy=policy).counts


# --- the boundary functions ------------------------------------------------------------------


def test_years_due_at_counts_from_the_next_day() -> None:
    assert years_due_at(ANCHOR, 150) == DUE_150
    assert years_due_at(ANCHOR, 7) == DUE_7
    # 23:59 JST on 31 March is still 31 March in Japan although it is 14:59 UTC.
    late = datetime(2025, 3, 31, 14, 59, tzinfo=UTC)
    assert years_due_at(late, 7) == datetime(2032, 4, 1, tzinfo=JST)


def test_years_due_at_across_29_february() -> None:
    # Superseded 28 Feb 2024: the period starts 29 Feb; in 2025 that day does not exist, so the
    # period ends on the last day of February (民法143条2項) and the purge is from 1 March.
    assert years_due_at(datetime(2024, 2, 28, 12, tzinfo=JST), 1) == datetime(
        2025, 3, 1, tzinfo=JST
    )
    # Superseded 29 Feb 2024: the period starts 1 March.
    assert years_due_at(datetime(2024, 2, 29, 12, tzinfo=JST), 1) == datetime(
        2025, 3, 1, tzinfo=JST
    )
    # Into a leap year the corresponding day exists.
    assert years_due_at(datetime(2024, 2, 28, 12, tzinfo=JST), 4) == datetime(
        2028, 2, 29, tzinfo=JST
    )


_instants = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(anchor=_instants, now=_instants, years=st.sampled_from([1, 4, 7, 150]))
def test_years_cutoff_is_the_inverse_of_due_at(anchor: datetime, now: datetime, years: int) -> None:
    assert (anchor < years_cutoff(now, years)) == (years_due_at(anchor, years) <= now)


_recent = st.datetimes(
    min_value=datetime(2024, 12, 1), max_value=datetime(2026, 2, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(
    sent=_recent,
    offset=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=12)),
    days=st.integers(1, 3),
)
def test_destination_cutoff_is_the_inverse_of_due_at(
    sent: datetime, offset: timedelta, days: int
) -> None:
    now = sent + offset
    assert (sent < destination_cutoff(now, days)) == (destination_due_at(sent, days) <= now)


# --- 修正前の本人確認情報 (150 years) ----------------------------------------------------------


@pytest.mark.parametrize("role", list(TIERS))
def test_superseded_snapshot_is_kept_150_years_from_superseding(
    db: peewee.Database, role: str
) -> None:
    current, history = TIERS[role]
    _current(current, "10000000001")
    _version(history, "10000000001", 1, datetime(1990, 5, 5, tzinfo=JST))
    _version(history, "10000000001", 2, ANCHOR)  # supersedes version 1
    _version(history, "10000000001", 3, ANCHOR + timedelta(days=400))  # the current version

    counts = _purge(role, DUE_150 - SECOND)
    assert counts[history._meta.table_name] == 0
    assert _versions(history, "10000000001") == [1, 2, 3]

    counts = _purge(role, DUE_150)
    assert counts[history._meta.table_name] == 1
    assert _versions(history, "10000000001") == [2, 3]
    assert current.select().count() == 1
    [log] = _purge_logs()
    assert log.user_id == PURGE_USER and history._meta.table_name in log.target

    # Long after, the newest version (the current record) is still never purged.
    assert _purge(role, DUE_150 + timedelta(days=365 * 200))[history._meta.table_name] == 1
    assert _versions(history, "10000000001") == [3]
    assert verify_usage_chain(db).ok


@pytest.mark.parametrize("role", list(TIERS))
def test_history_under_a_changed_code_is_superseded_by_the_change(
    db: peewee.Database, role: str
) -> None:
    current, history = TIERS[role]
    _version(history, "20000000001", 1, datetime(2001, 1, 1, tzinfo=JST))
    _version(history, "20000000001", 2, ANCHOR - timedelta(days=1))
    # 住民票コード変更 at ANCHOR: the old code's current row is gone, its history stays.
    new = {
        "change_reason": ChangeReason.RESIDENT_CODE_CHANGE,
        "old_resident_code": "20000000001",
    }
    _current(current, "20000000002", **new)
    _version(history, "20000000002", 1, ANCHOR, **new)

    assert _purge(role, DUE_150 - SECOND)[history._meta.table_name] == 1  # version 1 only
    assert _versions(history, "20000000001") == [2]
    assert _purge(role, DUE_150)[history._meta.table_name] == 1
    assert _versions(history, "20000000001") == []
    assert _versions(history, "20000000002") == [1]


# --- 消除者 (150 years from removal) ----------------------------------------------------------


@pytest.mark.parametrize("role", list(TIERS))
def test_removed_person_is_purged_150_years_after_removal(db: peewee.Database, role: str) -> None:
    current, history = TIERS[role]
    removed = {"record_status": RecordStatus.REMOVED, "change_reason": ChangeReason.DEATH}
    _current(current, "30000000001", **removed)
    _version(history, "30000000001", 1, datetime(1950, 1, 3, tzinfo=JST))
    _version(history, "30000000001", 2, ANCHOR, **removed)  # the removal
    # A current resident whose only version is ancient: never purged.
    _current(current, "30000000002")
    _version(history, "30000000002", 1, datetime(1900, 1, 1, tzinfo=JST))

    counts = _purge(role, DUE_150 - SECOND)
    assert (counts[current._meta.table_name], counts[history._meta.table_name]) == (0, 0)
    assert _versions(history, "30000000001") == [1, 2]

    counts = _purge(role, DUE_150)
    assert (counts[current._meta.table_name], counts[history._meta.table_name]) == (1, 2)
    remaining = [r.resident_code for r in current.select()]
    assert remaining == ["30000000002"]
    assert _versions(history, "30000000001") == []
    assert _versions(history, "30000000002") == [1]


def test_removed_cs_person_without_history_counts_from_the_timestamp(db: peewee.Database) -> None:
    _current(IdentityRow, "30000000003", record_status=RecordStatus.REMOVED, timestamp=ANCHOR)
    assert _purge("municipal_cs", DUE_150 - SECOND)["identity"] == 0
    assert _purge("municipal_cs", DUE_150)["identity"] == 1


# --- 提供・移転の記録 (7 years, refused ones too) ---------------------------------------------


def _provision(at: datetime, result: str = "provided", reason: str = "") -> None:
    record_provision(
        at=at,
        operator_id="op001",
        terminal_id="term.1",
        recipient="pref.04",
        message_type="pref.cs.identity_update",
        legal_basis="住基法30条の6",
        target="40000000001",
        result=result,
        reason=reason,
    )


@pytest.mark.parametrize("role", ["municipal_cs", "prefecture", "national", "card_management"])
def test_provision_records_are_kept_7_years_refused_ones_too(
    db: peewee.Database, role: str
) -> None:
    _provision(ANCHOR)
    _provision(ANCHOR + SECOND, "refused", "not_permitted")
    _provision(DUE_7)  # recorded later: its own seven years have barely begun
    assert _purge(role, DUE_7 - SECOND)["provision_log"] == 0
    assert ProvisionLogRow.select().count() == 3
    assert _purge(role, DUE_7)["provision_log"] == 2
    assert [r.at for r in ProvisionLogRow.select()] == [DUE_7]


def test_the_existing_registry_purges_nothing(db: peewee.Database) -> None:
    _provision(datetime(1900, 1, 1, tzinfo=JST))
    assert _purge("existing_registry", DUE_150 + timedelta(days=3650)) == {}
    assert ProvisionLogRow.select().count() == 1


def test_purges_run_in_batches_each_with_its_disposal_record(db: peewee.Database) -> None:
    for i in range(5):
        _provision(ANCHOR + i * SECOND)
    counts = _purge("card_management", DUE_7, RetentionPolicy(batch_size=2))
    assert counts == {"provision_log": 5}
    assert [log.target.split(":")[1].split()[0] for log in _purge_logs()] == ["2", "2", "1"]


# --- 送付先情報 (one business day after sending) ----------------------------------------------


def _destination(number: str, sent_at: datetime | None) -> None:
    DestinationRow.insert(
        management_number=number,
        resident_code="50000000001",
        content={"1": number},
        received_at=datetime(2025, 7, 1, tzinfo=JST),
        sent_at=sent_at,
    ).execute()


def _destinations() -> list[str]:
    return sorted(r.management_number for r in DestinationRow.select())


@pytest.mark.parametrize(
    ("sent_at", "deleted_from"),
    [
        # Wednesday → Thursday 00:00.
        (datetime(2025, 7, 16, 9, 0, tzinfo=JST), datetime(2025, 7, 17, tzinfo=JST)),
        # Friday → across the weekend → Monday 00:00.
        (datetime(2025, 7, 11, 17, 30, tzinfo=JST), datetime(2025, 7, 14, tzinfo=JST)),
        # Saturday (a closed day) → Monday 00:00.
        (datetime(2025, 7, 12, 11, 0, tzinfo=JST), datetime(2025, 7, 14, tzinfo=JST)),
        # Friday before 海の日 (Monday 21 July 2025) → Tuesday 00:00.
        (datetime(2025, 7, 18, 15, 0, tzinfo=JST), datetime(2025, 7, 22, tzinfo=JST)),
        # Just before midnight JST (still Friday in Japan, 14:59 UTC) → Tuesday 00:00.
        (datetime(2025, 7, 18, 14, 59, 59, tzinfo=UTC), datetime(2025, 7, 22, tzinfo=JST)),
        # 年末: sent 26 Dec (Fri) → offices closed 29 Dec–3 Jan, 27/28 weekend → 5 Jan 2026.
        (datetime(2025, 12, 26, 10, 0, tzinfo=JST), datetime(2026, 1, 5, tzinfo=JST)),
    ],
    ids=["weekday", "weekend", "sent-saturday", "holiday-monday", "late-friday", "new-year"],
)
def test_destination_is_deleted_one_business_day_after_sending(
    db: peewee.Database, sent_at: datetime, deleted_from: datetime
) -> None:
    assert not is_business_day(date(2025, 7, 21))  # 海の日: the scenario's premise
    _destination("SENT", sent_at)
    _destination("UNSENT", None)
    _destination("LATER", deleted_from)  # sent as the purge runs: its own day has just begun
    assert _purge("municipal_cs", deleted_from - SECOND)["destination"] == 0
    assert _destinations() == ["LATER", "SENT", "UNSENT"]
    assert _purge("municipal_cs", deleted_from)["destination"] == 1
    assert _destinations() == ["LATER", "UNSENT"]


def test_unsent_destinations_are_never_purged(db: peewee.Database) -> None:
    _destination("UNSENT", None)
    assert _purge("municipal_cs", datetime(2100, 1, 5, tzinfo=JST))["destination"] == 0
    assert _destinations() == ["UNSENT"]


# --- 特例転入: pending 転出証明書情報 ----------------------------------------------------------


def _pending(code: str, received_at: datetime, status: str = "pending") -> None:
    PendingMoveOutRow.insert(
        resident_code=code,
        from_municipality="131016",
        content={"name": "千代田 花子", "resident_code": code},
        received_at=received_at,
        status=status,
    ).execute()


def _pending_status() -> dict[str, tuple[str, Any]]:
    return {r.resident_code: (r.status, r.content) for r in PendingMoveOutRow.select()}


@pytest.mark.parametrize("days", [DEFAULT.pending_move_out_days, 5])
def test_pending_move_out_is_purged_after_the_period_and_logged(
    db: peewee.Database, days: int
) -> None:
    policy = RetentionPolicy(pending_move_out_days=days)
    received = datetime(2025, 6, 1, 8, 15, tzinfo=JST)
    _pending("60000000001", received)
    _pending("60000000002", received - timedelta(days=400), status="matched")  # 転入 done
    due = received + timedelta(days=days)

    assert _purge("municipal_cs", due - SECOND, policy)["pending_move_out"] == 0
    assert _pending_status()["60000000001"][0] == "pending"

    assert _purge("municipal_cs", due, policy)["pending_move_out"] == 1
    status = _pending_status()
    assert status["60000000001"] == ("purged", {})  # the data is gone, a tombstone remains
    assert status["60000000002"][0] == "matched"
    [log] = _purge_logs()
    assert (log.target, log.user_id, log.outcome) == ("60000000001", PURGE_USER, "ok")
    assert str(days) in log.reason

    assert _purge("municipal_cs", due + timedelta(days=1), policy)["pending_move_out"] == 0


# --- 使用履歴: never ----------------------------------------------------------------------------


def test_usage_log_is_never_purged(db: peewee.Database) -> None:
    from store.auditlog import append_usage

    with db.atomic():
        for i in range(3):
            append_usage(
                at=datetime(1900 + i, 1, 1, tzinfo=UTC),
                user_id="op001",
                terminal_id="term.1",
                task="search.4info",
                reason="窓口照会",
            )
    millennium_later = datetime(3025, 4, 1, tzinfo=UTC)
    for role in ROLES:
        purge(role, now=millennium_later)
    seqs = [r.seq for r in UsageLogRow.select().where(UsageLogRow.task == "search.4info")]
    assert seqs == [1, 2, 3]
    assert verify_usage_chain(db).ok
    assert not any("usage" in name for name in RetentionPolicy.__dataclass_fields__)


# --- arguments -------------------------------------------------------------------------------


def test_bad_arguments_are_refused(db: peewee.Database) -> None:
    from store.db import StoreError

    with pytest.raises(StoreError):
        purge("terminal", now=DUE_7)
    with pytest.raises(StoreError):
        purge("municipal_cs", now=datetime(2030, 1, 1))  # naive: JST or UTC?
    with pytest.raises(ValueError):
        RetentionPolicy(provision_years=0)


def test_report_lists_every_table_and_prints(db: peewee.Database) -> None:
    report = purge("municipal_cs", now=DUE_7)
    assert set(report.counts) == {
        "identity",
        "identity_history",
        "destination",
        "pending_move_out",
        "provision_log",
    }
    assert report.total == 0
    assert "municipal_cs" in str(report) and "provision_log 0" in str(report)
    assert json.loads(json.dumps(report.as_dict()))["counts"]["destination"] == 0
